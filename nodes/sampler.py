"""Sampling nodes: the one-node original sampler, and its pieces for SamplerCustomAdvanced / KSampler."""

from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..dynamicrafter.config import ORIGINAL_SAMPLING, VARIANTS
from ..dynamicrafter.schedule import denoise_span
from .adapter.guider import dynamicrafter_guider, separate_image_cfg
from .adapter.inputs import CATEGORY, SEED_MAX
from .adapter.ksampler import DynamiCrafterKSampler, dynamicrafter_sigmas, video_guidance_rescale
from .adapter.validation import CheckedNode
from .init_noise import AnalyticInit, InitNoiseType, analytic_noise, video_frames

AUTO = "auto"
SPACINGS = [AUTO, "uniform", "uniform_trailing"]
SWITCH = [AUTO, "on", "off"]


def model_variant(model):
    variant = getattr(model.model, "variant", None)
    if variant is None:
        raise ValueError("this node needs a DynamiCrafter model: load it with a DynamiCrafter loader node")
    return variant


def _rescale_value(model, guidance_rescale: float) -> float:
    return model_variant(model).sampling.guidance_rescale if guidance_rescale < 0 else guidance_rescale


def with_guidance_rescale(model, guidance_rescale: float):
    """A clone of the model whose CFG is the original's (with its video guidance rescale)."""
    variant = model_variant(model)
    patched = model.clone()
    patched.set_model_sampler_post_cfg_function(
        video_guidance_rescale(_rescale_value(model, guidance_rescale), variant.schedule.prediction)
    )
    return patched


def guider_for(
    model, positive, negative, cfg: float, image_cfg: float | None, guidance_rescale: float
) -> comfy.samplers.CFGGuider:
    """The original's CFG: the host's guider with the video guidance rescale, or with a separate image scale
    (``image_cfg``, None = one scale) the multi-condition guider."""
    if image_cfg is None:
        guider = comfy.samplers.CFGGuider(with_guidance_rescale(model, guidance_rescale))
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return guider
    return dynamicrafter_guider(
        model,
        positive,
        negative,
        cfg,
        image_cfg,
        _rescale_value(model, guidance_rescale),
        model_variant(model).schedule.prediction,
    )


def schedule_sigmas(model, steps: int, spacing: str, span: int | None = None):
    spacing = model_variant(model).sampling.spacing if spacing == AUTO else spacing
    return dynamicrafter_sigmas(model.get_model_object("model_sampling"), steps, spacing, span)


def partial_sigmas(model, steps: int, spacing: str, denoise: float) -> torch.Tensor:
    """Sigmas of a run over the first ``denoise`` of the training steps (at most one step per training step);
    empty for denoise 0 (nothing to do)."""
    span = denoise_span(denoise, len(model.get_model_object("model_sampling").sigmas))
    if span == 0:
        return torch.FloatTensor([])
    return schedule_sigmas(model, min(steps, span), spacing, span)


def ddim_sampler(model, eta: float, dynamic_rescale: str, from_noise: bool | None = True) -> DynamiCrafterKSampler:
    """``from_noise``: whether the run starts from the noise alone (None = decide from the sigmas)."""
    enabled = model_variant(model).schedule.dynamic_rescale if dynamic_rescale == AUTO else dynamic_rescale == "on"
    return DynamiCrafterKSampler(eta, enabled, from_noise)


def seed_input(tooltip: str = "Random seed of the start noise and of every step's noise.") -> io.Int.Input:
    return io.Int.Input("seed", default=123, min=0, max=SEED_MAX, control_after_generate=True, tooltip=tooltip)


def steps_input(
    tooltip: str = f"DDIM steps; the original uses {ORIGINAL_SAMPLING.steps}. Fewer is faster and softer.",
) -> io.Int.Input:
    return io.Int.Input("steps", default=ORIGINAL_SAMPLING.steps, min=1, max=1000, tooltip=tooltip)


_STEPS = steps_input()
CFG_INPUT = io.Float.Input(
    "cfg",
    default=ORIGINAL_SAMPLING.cfg,
    min=1.0,
    max=30.0,
    step=0.1,
    tooltip=f"Classifier-free guidance scale; the original uses {ORIGINAL_SAMPLING.cfg}.",
)
_ETA = io.Float.Input(
    "eta",
    default=ORIGINAL_SAMPLING.eta,
    min=0.0,
    max=1.0,
    step=0.01,
    tooltip="DDIM eta: 1.0 (the original) adds fresh noise each step; 0 is deterministic.",
)
_RESCALE = io.Float.Input(
    "guidance_rescale",
    default=-1.0,
    min=-1.0,
    max=1.0,
    step=0.05,
    tooltip="Pulls the guided prediction's contrast back toward the prompt-only one, per video. "
    "-1 = the model's default ("
    + ", ".join(f"{v.name}: {v.sampling.guidance_rescale}" for v in VARIANTS.values())
    + ").",
)


_DENOISE = io.Float.Input(
    "denoise",
    default=1.0,
    min=0.0,
    max=1.0,
    step=0.01,
    optional=True,
    tooltip="How much of the video is made anew. 1 = a new video from noise (the original). Below 1 the latent "
    "input is kept in part: connect VAE Encode of a video's frames (or an earlier run's latent) to restyle "
    "it; about 0.6 keeps the layout and motion and changes the look; 0 returns it unchanged.",
)
_IMAGE_CFG = io.Float.Input(
    "image_cfg",
    default=-1.0,
    min=-1.0,
    max=30.0,
    step=0.1,
    optional=True,
    tooltip="How strongly the picture steers the video, apart from the prompt (cfg then steers the prompt alone): "
    "lower = freer motion, higher = closer to the picture; 7.5 with cfg 7.5 is the usual single scale. "
    "Below 0 (-1, the default) = one scale for both, as the original. Costs a third model pass per step.",
)


def _names(has) -> str:
    """The variants whose row of the table satisfies ``has``, as '512/1024/512_interp'."""
    return "/".join(v.name for v in VARIANTS.values() if has(v))


_SPACING = io.Combo.Input(
    "spacing",
    options=SPACINGS,
    default=AUTO,
    tooltip=f"DDIM timesteps: 'uniform_trailing' ({_names(lambda v: v.sampling.spacing == 'uniform_trailing')}, "
    f"starts at the pure-noise step) or 'uniform' ({_names(lambda v: v.sampling.spacing == 'uniform')}). "
    "auto = the model's own.",
)
_DYNAMIC = io.Combo.Input(
    "dynamic_rescale",
    options=SWITCH,
    default=AUTO,
    tooltip=f"Rescales the predicted clean video by the training schedule "
    f"({_names(lambda v: v.schedule.dynamic_rescale)}). auto = the model's own setting.",
)


def sampling_inputs(seed_tooltip: str | None = None, steps_tooltip: str | None = None) -> list:
    """seed, steps, cfg, eta and guidance_rescale, as every sampling node of the pack takes them."""
    seed = seed_input() if seed_tooltip is None else seed_input(seed_tooltip)
    steps = _STEPS if steps_tooltip is None else steps_input(steps_tooltip)
    return [seed, steps, CFG_INPUT, _ETA, _RESCALE]


_MODEL_AND_CONDITIONING = [
    io.Model.Input("model", tooltip="The DynamiCrafter model."),
    io.Conditioning.Input("positive", tooltip="From a DynamiCrafter conditioning node."),
    io.Conditioning.Input("negative", tooltip="From the same DynamiCrafter conditioning node."),
]


class DynamiCrafterSampler(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterSampler",
            display_name="DynamiCrafter Sampler",
            category=f"{CATEGORY}/sampling",
            description="The original DynamiCrafter DDIM sampler with its defaults (trailing DDIM, eta 1, CFG 7.5, "
            "guidance rescale 0.7, dynamic rescale), with ComfyUI's previews, progress and cancel.",
            inputs=[
                *_MODEL_AND_CONDITIONING,
                io.Latent.Input("latent", tooltip="The empty video latent from the conditioning node."),
                *sampling_inputs(),
                _SPACING,
                _DYNAMIC,
                _IMAGE_CFG,
                _DENOISE,
                InitNoiseType.Input(
                    "init_noise",
                    optional=True,
                    tooltip="Optional: the CIL paper's analytic initial noise (DynamiCrafter Analytic Init Noise). "
                    "The video then starts at its step M from noise matched to real videos; keep denoise at 1.",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        latent,
        seed,
        steps,
        cfg,
        eta,
        guidance_rescale,
        spacing,
        dynamic_rescale,
        image_cfg=-1.0,
        denoise=1.0,
        init_noise: AnalyticInit | None = None,
    ) -> io.NodeOutput:
        if init_noise is not None and denoise != 1.0:
            raise ValueError("init_noise starts the video at its own step M: set denoise to 1, or remove init_noise")
        if init_noise is not None:  # the grid over the first M training steps (the reference's ddpm_from=M)
            m = init_noise.start_step
            sigmas = schedule_sigmas(model, min(steps, m), spacing, m)
        else:
            sigmas = partial_sigmas(model, steps, spacing, denoise)
        if len(sigmas) == 0:
            return io.NodeOutput(latent)
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        if init_noise is not None:
            frames = video_frames(positive)
            noise = analytic_noise(model, init_noise, samples, seed, frames, latent.get("batch_index"))
        else:
            noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
        guider = guider_for(model, positive, negative, cfg, separate_image_cfg(image_cfg), guidance_rescale)
        callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
        out = guider.sample(
            noise,
            samples,
            ddim_sampler(model, eta, dynamic_rescale, from_noise=denoise == 1.0),
            sigmas,
            denoise_mask=latent.get("noise_mask"),
            callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
            seed=seed,
        )
        out = out.to(comfy.model_management.intermediate_device())
        if latent.get("noise_mask") is not None:  # kept frames come back bit for bit (no VAE-scale round trip)
            mask = comfy.utils.reshape_mask(latent["noise_mask"], out.shape).to(out)
            out = mask * out + (1.0 - mask) * samples.to(out)
        return io.NodeOutput({**latent, "samples": out})


class DynamiCrafterDDIMSampler(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDDIMSampler",
            display_name="DynamiCrafter DDIM Sampler",
            category=f"{CATEGORY}/sampling",
            description="The original DDIM update as a SAMPLER for SamplerCustom / SamplerCustomAdvanced.",
            inputs=[io.Model.Input("model", tooltip="The DynamiCrafter model (to read its schedule)."), _ETA, _DYNAMIC],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, model, eta, dynamic_rescale) -> io.NodeOutput:
        return io.NodeOutput(ddim_sampler(model, eta, dynamic_rescale, from_noise=None))


class DynamiCrafterScheduler(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterScheduler",
            display_name="DynamiCrafter Scheduler",
            category=f"{CATEGORY}/sampling",
            description="Sigmas at the original DDIM timesteps, ending at the original's last noise level.",
            inputs=[io.Model.Input("model", tooltip="The DynamiCrafter model."), _STEPS, _SPACING, _DENOISE],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, model, steps, spacing, denoise=1.0) -> io.NodeOutput:
        return io.NodeOutput(partial_sigmas(model, steps, spacing, denoise))


class DynamiCrafterGuidanceRescale(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterGuidanceRescale",
            display_name="DynamiCrafter Guidance Rescale",
            category=f"{CATEGORY}/sampling",
            description="Video-aware guidance rescale for stock samplers (the stock RescaleCFG works per frame).",
            inputs=[io.Model.Input("model", tooltip="The DynamiCrafter model."), _RESCALE],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, guidance_rescale) -> io.NodeOutput:
        return io.NodeOutput(with_guidance_rescale(model, guidance_rescale))


class DynamiCrafterImageGuider(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterImageGuider",
            display_name="DynamiCrafter Text + Image Guider",
            category=f"{CATEGORY}/sampling",
            description="A GUIDER for SamplerCustomAdvanced with the prompt's and the picture's guidance scales "
            "apart (the original's multi-condition CFG), plus its video guidance rescale.",
            inputs=[
                *_MODEL_AND_CONDITIONING,
                io.Float.Input(
                    "cfg",
                    default=ORIGINAL_SAMPLING.cfg,
                    min=1.0,
                    max=30.0,
                    step=0.1,
                    tooltip=f"Text guidance: how strongly the prompt steers the video; {ORIGINAL_SAMPLING.cfg} as in the original.",
                ),
                io.Float.Input(
                    "image_cfg",
                    default=ORIGINAL_SAMPLING.cfg,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip="Image guidance: how strongly the picture steers it. Equal to cfg = the "
                    "usual single scale; lower = freer motion, higher = closer to the picture.",
                ),
                _RESCALE,
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, image_cfg, guidance_rescale) -> io.NodeOutput:
        return io.NodeOutput(guider_for(model, positive, negative, cfg, image_cfg, guidance_rescale))


NODES = [
    DynamiCrafterSampler,
    DynamiCrafterDDIMSampler,
    DynamiCrafterScheduler,
    DynamiCrafterGuidanceRescale,
    DynamiCrafterImageGuider,
]
