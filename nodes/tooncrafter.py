"""ToonCrafter nodes: load a ToonCrafter checkpoint, and decode its latents with the dual-reference VAE.

ToonCrafter is DynamiCrafter's 512 interpolation UNet with a video VAE decoder that also looks at the
encoder features of the start and end pictures. The loader gives the usual MODEL / CLIP / CLIP_VISION,
a host VAE for the conditioning node, and the full dual-reference VAE on its own socket type
(``TOONCRAFTER_VAE``), which only 'DynamiCrafter ToonCrafter Decode' takes.

The host VAE is the host's plain SD VAE built from the same file: ToonCrafter's encoder (so the
conditioning latents are the original's) and the per-frame layers of its decoder, with an identity
``post_quant_conv`` because ToonCrafter's decoder never sees that layer. Stock 'VAE Decode' with it runs
without the temporal layers and the reference frames: a quick preview, not ToonCrafter's output.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..dynamicrafter.checkpoint import CheckpointError, DynamiCrafterCheckpoint, load_checkpoint
from ..dynamicrafter.config import TOONCRAFTER
from ..dynamicrafter.image import FitMode, fit_image
from ..dynamicrafter.tooncrafter.config import is_dual_reference_vae, vae_config_from_state_dict
from ..dynamicrafter.tooncrafter.decode import CHUNK_FRAMES, ChunkDecoder, decode_video, decoder_calls
from ..dynamicrafter.tooncrafter.vae import ReferenceContext, ToonCrafterVAE
from .adapter.encoders import clip_vision_from_state_dict, text_encoder_from_state_dict
from .adapter.family import host_attention
from .adapter.inputs import CATEGORY, DECODE_FRAMES_MAX
from .adapter.patcher import WEIGHT_DTYPES, is_dynamic, model_from_checkpoint, new_patcher, vae_from_checkpoint
from .adapter.validation import CheckedNode

log = logging.getLogger(__name__)

TOONCRAFTER_CATEGORY = f"{CATEGORY}/tooncrafter"
ToonCrafterVAEType = io.Custom("TOONCRAFTER_VAE")

DECODE_BYTES_PER_PIXEL = 1300
"""Peak decoder activations per output pixel per frame of a chunk, in units of the compute dtype's size
(measured on CUDA: 16 frames of 320x512 in bf16 peak at 6.25 GiB; fp32 needs 1090)."""

_TEMPORAL_KEYS = (".time_stack.", "conv_out.time_mix_conv.", "decoder.attn_refinement.")


@dataclass
class ToonCrafterVAEModel:
    """What travels on a TOONCRAFTER_VAE socket: the dual-reference VAE under the host's model management."""

    patcher: comfy.model_patcher.ModelPatcher
    dtype: torch.dtype

    @property
    def vae(self) -> ToonCrafterVAE:
        return self.patcher.model


def tooncrafter_vae_from_state_dict(sd: dict[str, torch.Tensor], source: str) -> ToonCrafterVAEModel:
    """The dual-reference VAE from a ``first_stage_model.`` part, on the host's VAE devices and dtype."""
    try:
        config = vae_config_from_state_dict(sd)
    except KeyError as e:
        raise CheckpointError(source, f"the ToonCrafter VAE weights are incomplete (missing {e.args[0]!r})") from None
    load_device, offload_device = mm.vae_device(), mm.vae_offload_device()
    dtype = mm.vae_dtype(load_device, [torch.bfloat16, torch.float32])
    vae = ToonCrafterVAE(
        config, attention=host_attention, dtype=dtype, device=offload_device, operations=comfy.ops.disable_weight_init
    ).eval()
    if hasattr(mm, "archive_model_dtypes"):  # 0.33.0: what dynamic VRAM casts the streamed weights back to
        mm.archive_model_dtypes(vae)
    patcher = new_patcher(vae, load_device, offload_device)
    missing, unexpected = vae.load_state_dict(sd, strict=False, assign=is_dynamic(patcher))
    if missing or unexpected:
        raise CheckpointError(
            source,
            f"the ToonCrafter VAE weights do not fit the network derived from their shapes "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the file may be damaged",
        )
    log.info("ToonCrafter VAE: %d levels, width %d, dtype %s", len(config.channel_mult), config.channels, dtype)
    return ToonCrafterVAEModel(patcher, dtype)


def per_frame_vae_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The plain SD VAE inside ToonCrafter's: its encoder, the decoder's per-frame layers, identity post_quant_conv."""
    plain = {k: v for k, v in sd.items() if not any(t in k for t in _TEMPORAL_KEYS) and not k.endswith(".mix_factor")}
    weight = plain["post_quant_conv.weight"]
    plain["post_quant_conv.weight"] = torch.eye(weight.shape[0], weight.shape[1], dtype=weight.dtype)[..., None, None]
    plain["post_quant_conv.bias"] = torch.zeros_like(plain["post_quant_conv.bias"])
    return plain


def load_tooncrafter(path: str) -> DynamiCrafterCheckpoint:
    """Split a ToonCrafter file: the UNet is DynamiCrafter 512_interp's, the VAE must be the dual-reference one."""
    ckpt = load_checkpoint(path, "512_interp")
    if not is_dual_reference_vae(ckpt.require("vae")):
        raise CheckpointError(
            path,
            "its VAE is DynamiCrafter's plain SD VAE, not ToonCrafter's dual-reference one: "
            "this is a DynamiCrafter checkpoint; load it with 'DynamiCrafter Load Checkpoint'.",
        )
    # the schedule stays the file's (its scale_arr); the rest is ToonCrafter's row of the variant table
    return dataclasses.replace(ckpt, variant=dataclasses.replace(TOONCRAFTER, schedule=ckpt.variant.schedule))


def _pixels(images: torch.Tensor, width: int, height: int, fit: FitMode) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` in 0..1 -> ``[B, 3, height, width]`` in [-1, 1], fitted like the conditioning node."""
    return fit_image(images[..., :3], width, height, fit).movedim(-1, 1) * 2 - 1


def _chunk_decoder(
    model: ToonCrafterVAEModel, context: ReferenceContext, progress: comfy.utils.ProgressBar
) -> ChunkDecoder:
    """Decode one chunk on the VAE's device; stop when the user cancels; report progress."""
    device = model.patcher.load_device

    def decode(z: torch.Tensor) -> torch.Tensor:
        mm.throw_exception_if_processing_interrupted()
        pixels = model.vae.decode(z.to(device, model.dtype), context).to(mm.intermediate_device(), torch.float32)
        progress.update(1)
        return pixels

    return decode


def decode_latents(
    model: ToonCrafterVAEModel,
    samples: torch.Tensor,
    start_image: torch.Tensor,
    end_image: torch.Tensor,
    frames: int,
    fit: FitMode = "crop",
    middle_pass: bool = True,
) -> torch.Tensor:
    """IMAGE frames ``[B*T, H, W, 3]`` of ``[B*T, 4, h, w]`` latents; one start/end picture per video or for all."""
    config = model.vae.config
    if samples.ndim != 4 or samples.shape[1] != config.z_channels:
        raise ValueError(
            f"expected a frames-as-batch latent [frames, {config.z_channels}, h, w], got shape "
            f"{tuple(samples.shape)}; use the latent of a DynamiCrafter conditioning node and sampler"
        )
    if samples.shape[0] % frames:
        raise ValueError(
            f"the latent holds {samples.shape[0]} frames, not a multiple of frames={frames}; set frames "
            "to the conditioning node's frames"
        )
    videos = samples.shape[0] // frames
    for name, images in (("start_image", start_image), ("end_image", end_image)):
        if images.shape[0] not in (1, videos):
            raise ValueError(f"{name} holds {images.shape[0]} pictures for {videos} videos; give one, or one per video")
    height, width = samples.shape[2] * config.downscale, samples.shape[3] * config.downscale
    keyframes = [_pixels(images, width, height, fit) for images in (start_image, end_image)]

    memory = DECODE_BYTES_PER_PIXEL * min(frames, CHUNK_FRAMES) * height * width * mm.dtype_size(model.dtype)
    mm.load_models_gpu([model.patcher], memory_required=memory)
    progress = comfy.utils.ProgressBar(videos * decoder_calls(frames, CHUNK_FRAMES, middle_pass))
    decoded = []
    with torch.inference_mode():
        for index in range(videos):
            first, last = (
                k[index if k.shape[0] > 1 else 0][None].to(model.patcher.load_device, model.dtype) for k in keyframes
            )
            decode = _chunk_decoder(model, model.vae.reference_context(first, last), progress)
            video = samples[index * frames : (index + 1) * frames]
            decoded.append(decode_video(decode, video, CHUNK_FRAMES, middle_pass))
    return ((torch.cat(decoded) + 1) / 2).clamp(0, 1).movedim(1, -1)


class DynamiCrafterToonCrafterLoader(CheckedNode):
    """A ToonCrafter checkpoint: model, text encoder, VAE for conditioning, CLIP vision, dual-reference VAE."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterToonCrafterLoader",
            display_name="DynamiCrafter Load ToonCrafter",
            category=TOONCRAFTER_CATEGORY,
            description="Loads ToonCrafter (the original model.ckpt or Kijai's "
            "tooncrafter_512_interp-fp16.safetensors). Condition with 'DynamiCrafter Interpolate / "
            "Loop' at 512x320 and decode with 'DynamiCrafter ToonCrafter Decode'.",
            inputs=[
                io.Combo.Input(
                    "ckpt_name",
                    options=sorted(folder_paths.get_filename_list("checkpoints")),
                    tooltip="A ToonCrafter file from models/checkpoints: the original model.ckpt (renamed, "
                    f"e.g. {TOONCRAFTER.file_name}) or tooncrafter_512_interp-fp16.safetensors.",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="default",
                    tooltip="How the UNet weights are stored in memory. 'default' lets ComfyUI pick "
                    "(bf16/fp16 on most GPUs, fp32 on CPU). fp8 halves the memory again.",
                ),
            ],
            outputs=[
                io.Model.Output(tooltip="The UNet (DynamiCrafter 512 interpolation) and image-token Resampler."),
                io.Clip.Output(tooltip="The OpenCLIP ViT-H/14 text encoder (as SD 2.x's)."),
                io.Vae.Output(
                    tooltip="ToonCrafter's encoder as a plain VAE, for the conditioning node's 'vae'. "
                    "Stock 'VAE Decode' with it skips the temporal layers and reference frames "
                    "(a preview)."
                ),
                io.ClipVision.Output(tooltip="The OpenCLIP ViT-H/14 vision tower for the image tokens."),
                ToonCrafterVAEType.Output(
                    display_name="tooncrafter_vae",
                    tooltip="The dual-reference video VAE, for 'DynamiCrafter ToonCrafter Decode'.",
                ),
            ],
        )

    @classmethod
    def execute(cls, ckpt_name: str, weight_dtype: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        ckpt = load_tooncrafter(path)
        text_sd, vision_sd, vae_sd = ckpt.require("text_encoder"), ckpt.require("clip_vision"), ckpt.require("vae")
        plain = dataclasses.replace(ckpt, parts={**ckpt.parts, "vae": per_frame_vae_state_dict(vae_sd)})
        return io.NodeOutput(
            model_from_checkpoint(ckpt, weight_dtype),
            text_encoder_from_state_dict(text_sd),
            vae_from_checkpoint(plain),
            clip_vision_from_state_dict(vision_sd),
            tooncrafter_vae_from_state_dict(vae_sd, path),
        )


class DynamiCrafterToonCrafterDecode(CheckedNode):
    """Latent video -> frames through ToonCrafter's decoder, guided by the start and end pictures."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterToonCrafterDecode",
            display_name="DynamiCrafter ToonCrafter Decode",
            category=TOONCRAFTER_CATEGORY,
            description="Decodes a ToonCrafter latent video as the original does: 16 frames per decoder call, the "
            "start and end pictures' encoder features injected into every level, and frames 7 and 8 "
            "decoded again without latents 1 and 14.",
            inputs=[
                io.Latent.Input("samples", tooltip="The sampled video latent (frames folded into the batch)."),
                ToonCrafterVAEType.Input(
                    "tooncrafter_vae", tooltip="The dual-reference VAE from 'DynamiCrafter Load ToonCrafter'."
                ),
                io.Image.Input(
                    "start_image",
                    tooltip="The first keyframe, as given to the conditioning node (one "
                    "picture, or one per video of the batch).",
                ),
                io.Image.Input(
                    "end_image",
                    tooltip="The last keyframe, as given to the conditioning node; for a loop, "
                    "the start picture again.",
                ),
                io.Int.Input(
                    "frames",
                    default=16,
                    min=1,
                    max=DECODE_FRAMES_MAX,
                    tooltip="Frames per video: the conditioning node's frames (16 for ToonCrafter).",
                ),
                io.Combo.Input(
                    "fit",
                    options=["crop", "pad"],
                    default="crop",
                    tooltip="How the keyframes were fitted to the video size in the conditioning node.",
                ),
                io.Boolean.Input(
                    "middle_pass",
                    default=True,
                    tooltip="Decode a second time without latents 1 and T-2 and take frames T/2-1 and "
                    "T/2 from that pass, as the original scripts do (videos of 6+ frames).",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The decoded frames, in order.")],
        )

    @classmethod
    def execute(
        cls,
        samples: dict,
        tooncrafter_vae: ToonCrafterVAEModel,
        start_image: torch.Tensor,
        end_image: torch.Tensor,
        frames: int,
        fit: FitMode,
        middle_pass: bool,
    ) -> io.NodeOutput:
        return io.NodeOutput(
            decode_latents(tooncrafter_vae, samples["samples"], start_image, end_image, frames, fit, middle_pass)
        )


NODES = [DynamiCrafterToonCrafterLoader, DynamiCrafterToonCrafterDecode]
