"""DynamiCrafter as a native ComfyUI model family.

``DynamiCrafterConfig`` (a ``supported_models_base.BASE``) and ``DynamiCrafterModel`` (a
``model_base.BaseModel``) let the host's ModelPatcher manage devices, offloading and weight dtypes,
and let stock samplers run it. Latents are 2-D with frames folded into the batch
(``[B*T, 4, h, w]``), so the stock SD VAE, previews and noise masks work unchanged; the number of
frames T travels in the conditioning and ``DynamiCrafterNet`` unfolds videos from it. The host's
``transformer_options`` (attention and block patches, wrappers) and ControlNet residuals reach the UNet
as they reach the host's own UNets.
"""

from __future__ import annotations

import logging

import comfy.conds
import comfy.latent_formats
import comfy.ldm.modules.attention
import comfy.model_base
import comfy.patcher_extension
import comfy.supported_models_base
import torch

from ...dynamicrafter.checkpoint import PART_PREFIXES
from ...dynamicrafter.config import IMAGE_TOKENS_PER_FRAME, VARIANTS, ResamplerConfig, UNetConfig, VariantConfig
from ...dynamicrafter.frames import fold_frames, unfold_frames
from ...dynamicrafter.image_controls import blend_frame_tokens
from ...dynamicrafter.resampler import Resampler
from ...dynamicrafter.unet import DynamiCrafterUNet
from ..camera_model import camera_cond, with_camera

log = logging.getLogger(__name__)

# Keys the conditioning nodes put into each conditioning entry's dict.
COND_FRAMES = "dynamicrafter_frames"
COND_FS = "dynamicrafter_fs"
COND_IMAGE_TOKENS = "dynamicrafter_clip_vision_tokens"
COND_CONCAT = "concat_latent_image"
COND_TASK = "dynamicrafter_task"
COND_END_IMAGE_TOKENS = "dynamicrafter_end_clip_vision_tokens"
COND_END_WEIGHTS = "dynamicrafter_end_token_weights"
"""Optional: the end picture's CLIP tokens and each frame's share of its image tokens ``[T]``."""
COND_CAMERA = "dynamicrafter_camera"
"""Optional: camera-to-world poses relative to the conditioning frame ``[1, T, 4, 4]`` (``nodes/camera.py``)."""
FS_AUTO = 0
"""fs value meaning "the variant's default" (``VariantConfig.default_fs``)."""
NEEDS_CONDITIONING = (
    "DynamiCrafter needs its conditioning: connect the positive and negative outputs of a "
    "'DynamiCrafter Image To Video' (or interpolation) node to the sampler."
)


def host_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, transformer_options: dict | None = None
) -> torch.Tensor:
    """The host's attention dispatch (xformers, SDPA, sage or sub-quadratic, as installed/selected).

    Looked up at call time, so packs that swap the host's function act here too; the host reads its
    ``optimized_attention_override`` from ``transformer_options``.
    """
    return comfy.ldm.modules.attention.optimized_attention(q, k, v, heads, transformer_options=transformer_options)


def require_interpolation(variant: VariantConfig, what: str) -> None:
    """Raise a clear error unless ``variant`` is the interpolation checkpoint's (``what`` needs it)."""
    if not variant.interpolation:
        interp = VARIANTS["512_interp"]
        raise ValueError(
            f"{what} needs the DynamiCrafter {interp.name} checkpoint ({interp.hf_repo}, e.g. "
            f"{interp.file_name}), but a {variant.name} model is loaded. Load that file, or, if the file "
            f"IS the interp model, set the loader's variant to '{interp.name}'."
        )


class DynamiCrafterNet(DynamiCrafterUNet):
    """The UNet plus the image-token Resampler, called with the host's frames-as-batch tensors.

    Every conditioning tensor arrives with one row per frame (the host repeats per-video conds to
    the latent batch and may stack cond and uncond): one row per video is taken back with ``[::T]``.
    """

    def __init__(
        self,
        unet: UNetConfig,
        resampler: ResamplerConfig,
        dtype: torch.dtype | None = None,
        device=None,
        operations=None,
        **_: object,
    ):
        super().__init__(unet, attention=host_attention, dtype=dtype, device=device, operations=operations)
        self.image_proj_model = Resampler(
            resampler, attention=host_attention, dtype=dtype, device=device, operations=operations
        )
        self._tokens_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def forget_image_tokens(self) -> None:
        """Drop the cached Resampler output; called when a sampling run starts, as its weights may have been
        patched (a LoRA) since the last run."""
        self._tokens_cache = None

    def image_tokens(self, clip_tokens: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        """Resampler output, cached within a sampling run: the same CLIP tokens come back at every step."""
        if torch.compiler.is_compiling():
            # part of the compiled graph; the cache is plain Python
            return self.image_proj_model(clip_tokens, transformer_options)
        cached = self._tokens_cache
        if (
            cached is not None
            and cached[0].shape == clip_tokens.shape
            and cached[0].device == clip_tokens.device
            and cached[0].dtype == clip_tokens.dtype
            and torch.equal(cached[0], clip_tokens)
        ):
            return cached[1]
        tokens = self.image_proj_model(clip_tokens, transformer_options)
        self._tokens_cache = (clip_tokens.clone(), tokens)
        return tokens

    def blended_tokens(
        self, tokens: torch.Tensor, end_clip_tokens: torch.Tensor | None, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Image tokens with each frame's share of the end picture's mixed in (after the Resampler)."""
        if end_clip_tokens is None or weights is None:
            return tokens
        slots = tokens.shape[1] // IMAGE_TOKENS_PER_FRAME
        if weights.shape[-1] != slots:
            if not torch.all(weights == weights[..., :1]):
                raise ValueError(
                    f"a ramp of the end picture's tokens needs {slots} frames (one per frame of the "
                    f"model's image tokens), got {weights.shape[-1]}; use 'constant' or {slots} frames"
                )
            weights = weights[..., :1].expand(*weights.shape[:-1], slots)
        return blend_frame_tokens(tokens, self.image_proj_model(end_clip_tokens), weights)

    def video_image_tokens(
        self,
        frames: int,
        clip_tokens: torch.Tensor,
        end_clip_tokens: torch.Tensor | None,
        end_weights: torch.Tensor | None,
        transformer_options: dict,
    ) -> torch.Tensor:
        """Each video's image tokens ``[videos, 16 x slots, C]`` from the per-frame rows of its conds."""
        tokens = self.image_tokens(clip_tokens[::frames], transformer_options)
        return self.blended_tokens(
            tokens,
            None if end_clip_tokens is None else end_clip_tokens[::frames],
            None if end_weights is None else end_weights[::frames],
        )

    def control_context(self, cond: dict, transformer_options: dict) -> torch.Tensor:
        """The context ToonCrafter's sketch ControlNet reads: ``[text ; image tokens of every frame]``, one row
        per frame, from the processed conds of one model call (the sketch-guidance code's ``c_crossattn``)."""
        frames = cond.get(COND_FRAMES)
        if frames is None or cond.get(COND_IMAGE_TOKENS) is None:
            raise ValueError(NEEDS_CONDITIONING)
        text = cond["c_crossattn"]
        tokens = self.video_image_tokens(
            frames,
            cond[COND_IMAGE_TOKENS],
            cond.get(COND_END_IMAGE_TOKENS),
            cond.get(COND_END_WEIGHTS),
            transformer_options,
        )
        per_video = torch.cat([text[::frames], tokens.to(text.dtype)], dim=1)
        return per_video.repeat_interleave(frames, dim=0)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None = None,
        control: dict | None = None,
        transformer_options: dict | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """The host's call; its ``DIFFUSION_MODEL`` wrappers run around it, as around its own UNets."""
        transformer_options = {} if transformer_options is None else transformer_options
        wrappers = comfy.patcher_extension.get_all_wrappers(
            comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, transformer_options
        )
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(self._forward, self, wrappers).execute(
            x, timesteps, context, control, transformer_options, **kwargs
        )

    def _forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None,
        control: dict | None,
        transformer_options: dict,
        dynamicrafter_frames: int | None = None,
        dynamicrafter_clip_vision_tokens: torch.Tensor | None = None,
        dynamicrafter_fs: torch.Tensor | None = None,
        dynamicrafter_end_clip_vision_tokens: torch.Tensor | None = None,
        dynamicrafter_end_token_weights: torch.Tensor | None = None,
        dynamicrafter_camera: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        frames = dynamicrafter_frames
        if frames is None or dynamicrafter_clip_vision_tokens is None:
            raise ValueError(NEEDS_CONDITIONING)
        if x.shape[0] % frames:
            raise ValueError(
                f"the latent batch ({x.shape[0]}) is not a multiple of the {frames} frames set by the "
                "conditioning node; use the latent that node outputs"
            )
        videos = x.shape[0] // frames
        x = unfold_frames(x, frames)
        tokens = self.video_image_tokens(
            frames,
            dynamicrafter_clip_vision_tokens,
            dynamicrafter_end_clip_vision_tokens,
            dynamicrafter_end_token_weights,
            transformer_options,
        )
        fs = None if dynamicrafter_fs is None else dynamicrafter_fs[::frames].reshape(videos)
        if dynamicrafter_camera is not None:
            transformer_options = with_camera(self, dynamicrafter_camera[::frames], x, transformer_options)
        out = super().forward(
            x,
            timesteps[::frames],
            context[::frames],
            fs,
            image_context=tokens,
            transformer_options=transformer_options,
            control=control,
        )
        return fold_frames(out)


class DynamiCrafterModel(comfy.model_base.BaseModel):
    """BaseModel whose ``extra_conds`` turn the conditioning node's values into UNet inputs."""

    def __init__(self, model_config: DynamiCrafterConfig, model_type: comfy.model_base.ModelType, device=None):
        super().__init__(model_config, model_type, device=device, unet_model=DynamiCrafterNet)
        self.variant: VariantConfig = model_config.variant

    def extra_conds(self, **kwargs):
        out = {}
        noise = kwargs["noise"]
        frames = kwargs.get(COND_FRAMES)
        concat = kwargs.get(COND_CONCAT)
        tokens = kwargs.get(COND_IMAGE_TOKENS)
        if frames is None or concat is None or tokens is None:
            raise ValueError(NEEDS_CONDITIONING)
        if noise.shape[0] % frames:
            raise ValueError(
                f"the latent batch ({noise.shape[0]}) is not a multiple of the {frames} frames of the "
                "conditioning; use the latent that the DynamiCrafter conditioning node outputs"
            )
        if concat.shape[-2:] != noise.shape[-2:]:
            raise ValueError(
                f"the latent is {noise.shape[-1] * 8}x{noise.shape[-2] * 8} but the conditioning image "
                f"is {concat.shape[-1] * 8}x{concat.shape[-2] * 8}; use the latent of the same node"
            )
        self.check_size(noise.shape[-2] * 8, noise.shape[-1] * 8)
        self.check_task(kwargs.get(COND_TASK, "i2v"))
        self.check_image_tokens(tokens)
        concat = self.process_latent_in(concat).repeat(noise.shape[0] // concat.shape[0], 1, 1, 1)
        out["c_concat"] = comfy.conds.CONDNoiseShape(concat)
        cross_attn = kwargs.get("cross_attn")
        if cross_attn is not None:
            out["c_crossattn"] = comfy.conds.CONDCrossAttn(cross_attn)
        fs = kwargs.get(COND_FS, FS_AUTO)
        fs = self.variant.default_fs if fs == FS_AUTO else fs
        out[COND_FS] = comfy.conds.CONDRegular(torch.tensor([fs], dtype=torch.long))
        out[COND_IMAGE_TOKENS] = comfy.conds.CONDRegular(tokens)
        out[COND_FRAMES] = comfy.conds.CONDConstant(frames)
        camera = camera_cond(self.diffusion_model.config, kwargs.get(COND_CAMERA), frames)
        if camera is not None:
            out[COND_CAMERA] = camera
        if kwargs.get(COND_END_IMAGE_TOKENS) is not None:
            out[COND_END_IMAGE_TOKENS] = comfy.conds.CONDRegular(kwargs[COND_END_IMAGE_TOKENS])
            out[COND_END_WEIGHTS] = comfy.conds.CONDRegular(kwargs[COND_END_WEIGHTS].view(1, -1))
        return out

    def check_task(self, task: str) -> None:
        """Interpolation and loops need the interpolation checkpoint; the others never saw that layout."""
        if task != "i2v":
            require_interpolation(self.variant, task)

    def check_image_tokens(self, tokens: torch.Tensor) -> None:
        """The CLIP vision tokens must have the width this model's Resampler reads (1280: ViT-H/14)."""
        width = self.model_config.unet_config["resampler"].embedding_dim
        if tokens.shape[-1] != width:
            raise ValueError(
                f"the CLIP vision tokens are {tokens.shape[-1]} wide but this DynamiCrafter model reads "
                f"{width}-wide ones: use the OpenCLIP ViT-H/14 CLIP vision model "
                "(e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors) in the conditioning node"
            )

    def check_size(self, height: int, width: int) -> None:
        """Refuse sizes far from what the variant was trained on (the result would be noise).

        The trained resolution is the variant's, and only a network of the variant's released width has it; a
        network of another width (the demo checkpoint, test networks) was never trained at any size.
        """
        config, released = self.diffusion_model.config, self.variant.unet
        if (config.model_channels, config.channel_mult) != (released.model_channels, released.channel_mult):
            return
        area, trained = height * width, self.variant.height * self.variant.width
        if not 0.5 <= area / trained <= 2.0:
            raise ValueError(
                f"{width}x{height} does not fit DynamiCrafter {self.variant.name}, which was trained at "
                f"{self.variant.width}x{self.variant.height}: set the conditioning node's width/height "
                "to that size (or use the checkpoint of the matching variant)"
            )
        if (height, width) != (self.variant.height, self.variant.width):
            log.warning(
                "DynamiCrafter %s was trained at %dx%d; sampling at %dx%d",
                self.variant.name,
                self.variant.width,
                self.variant.height,
                width,
                height,
            )


class DynamiCrafterConfig(comfy.supported_models_base.BASE):
    """Host model config for one checkpoint: structure from its shapes, schedule from its variant."""

    unet_extra_config: dict = {}
    latent_format = comfy.latent_formats.SD15
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    memory_usage_factor = 2.0
    vae_key_prefix = [PART_PREFIXES["vae"]]
    text_encoder_key_prefix = [PART_PREFIXES["text_encoder"]]

    def __init__(self, variant: VariantConfig, unet: UNetConfig, resampler: ResamplerConfig):
        # model_channels: the host's FreeU and HyperTile nodes read it from here.
        super().__init__({"unet": unet, "resampler": resampler, "model_channels": unet.model_channels})
        self.variant = variant
        schedule = variant.schedule
        self.sampling_settings = {
            "beta_schedule": "linear",
            "linear_start": schedule.linear_start,
            "linear_end": schedule.linear_end,
            "timesteps": schedule.timesteps,
            "zsnr": schedule.zero_terminal_snr,
        }

    def model_type(self, state_dict=None, prefix: str = "") -> comfy.model_base.ModelType:
        if self.variant.schedule.prediction == "v":
            return comfy.model_base.ModelType.V_PREDICTION
        return comfy.model_base.ModelType.EPS

    def get_model(self, state_dict=None, prefix: str = "", device=None) -> DynamiCrafterModel:
        return DynamiCrafterModel(self, self.model_type(), device=device)

    def clip_target(self, state_dict=None):
        return None
