"""FreeNoise (LongerCrafter) in the host: a model patch for any sampler, and the Long Video node's one-pass mode.

The patch puts a :class:`..dynamicrafter.freenoise.FreeNoise` into the model's ``transformer_options`` (the UNet then
runs its temporal attention and image tokens in fused windows) and wraps the host's outer sampling
(``WrappersMP.OUTER_SAMPLE``) to reschedule the start noise, so the stock KSampler, SamplerCustomAdvanced, the
DynamiCrafter Sampler and the Long Video node all sample it. LoRA and other patches of the model stay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import comfy.patcher_extension
import torch
from comfy_api.latest import io

from ..dynamicrafter import freenoise
from ..dynamicrafter.chain import ContinuationPlan
from ..dynamicrafter.frames import fold_frames, unfold_frames
from ..dynamicrafter.image import fit_image
from .adapter.family import COND_FRAMES
from .adapter.inputs import CATEGORY
from .adapter.validation import CheckedNode, max_run_bytes, video_memory_bytes
from .conditioning import build_conditioning
from .sampler import model_variant
from .segment_sampler import SamplingSettings, SegmentSampler

log = logging.getLogger(__name__)

MODE_FREENOISE = "FreeNoise one pass"
WRAPPER_KEY = "dynamicrafter_freenoise"


def conds_frames(conds: Mapping[str, list] | None) -> int | None:
    """The video length the DynamiCrafter conditioning set, from a guider's conds (raw or processed)."""
    for entries in (conds or {}).values():
        for entry in entries or []:
            frames = entry.get(COND_FRAMES)
            if frames is None and COND_FRAMES in entry.get("model_conds", {}):
                frames = entry["model_conds"][COND_FRAMES].cond
            if frames is not None:
                return int(frames)
    return None


def rescheduled(noise: torch.Tensor, frames: int, settings: freenoise.FreeNoise, seed: int | None) -> torch.Tensor:
    """The host's start noise ``[(B T), 4, h, w]`` rescheduled the FreeNoise way (seeded by the sampling seed)."""
    video = unfold_frames(noise, frames)
    return fold_frames(freenoise.reschedule_noise(video, settings.window, settings.stride, int(seed or 0)))


def _outer_sample_wrapper(settings: freenoise.FreeNoise):
    def wrapper(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, *args, **kwargs):
        frames = conds_frames(getattr(executor.class_obj, "conds", None))
        if frames is None:
            raise ValueError(
                "DynamiCrafter FreeNoise needs the DynamiCrafter conditioning (frames not found): connect the "
                "outputs of a DynamiCrafter conditioning node to the sampler"
            )
        settings.check(frames)
        seed = args[1] if len(args) > 1 else kwargs.get("seed")
        log.info("DynamiCrafter FreeNoise: %d frames, window %d, stride %d", frames, settings.window, settings.stride)
        noise = rescheduled(noise, frames, settings, seed)
        return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, *args, **kwargs)

    return wrapper


def freenoise_model(model, settings: freenoise.FreeNoise):
    """A clone of ``model`` that samples in FreeNoise mode (see the module docstring)."""
    settings.check()
    model_variant(model)  # a DynamiCrafter model, or a clear error
    patched = model.clone()
    options = dict(patched.model_options.get("transformer_options", {}))
    options[freenoise.OPTION] = settings
    patched.model_options["transformer_options"] = options
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY)
    patched.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, _outer_sample_wrapper(settings)
    )
    return patched


def model_settings(model) -> freenoise.FreeNoise:
    """The FreeNoise settings a model was patched with, else the defaults."""
    return model.model_options.get("transformer_options", {}).get(freenoise.OPTION) or freenoise.FreeNoise()


class DynamiCrafterFreeNoise(CheckedNode):
    QUEUE_TIME_LINKS = ("window", "stride")

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterFreeNoise",
            display_name="DynamiCrafter FreeNoise",
            category=f"{CATEGORY}/sampling",
            description="Longer videos in one pass (FreeNoise / LongerCrafter, training-free): the temporal attention "
            "runs in overlapping windows of frames fused with weights falling off towards the window edges, and "
            "the start noise of later frames is a local shuffle of earlier frames'. Set the conditioning node's "
            "frames above 16 (e.g. 32-64) and sample with any sampler. At 16 frames the model is unchanged.",
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter model (after any LoRA)."),
                io.Int.Input(
                    "window",
                    default=freenoise.DEFAULT_WINDOW,
                    min=2,
                    max=16,
                    tooltip="Frames per attention window; the model was trained on 16 (FreeNoise's default).",
                ),
                io.Int.Input(
                    "stride",
                    default=freenoise.DEFAULT_STRIDE,
                    min=1,
                    max=16,
                    tooltip="Frames between window starts (at most the window); FreeNoise's default is 4. "
                    "Smaller = more overlap, smoother and slower.",
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        window, stride = values.get("window"), values.get("stride")
        if window is None or stride is None:
            return None
        problems = freenoise.FreeNoise(window, stride).problems()
        return "; ".join(problems) or None

    @classmethod
    def execute(cls, model, window, stride) -> io.NodeOutput:
        return io.NodeOutput(freenoise_model(model, freenoise.FreeNoise(window, stride)))


class FreeNoiseChecks:
    """Queue-time checks of the Long Video node's FreeNoise mode (length and memory of the one pass)."""

    QUEUE_TIME_LINKS = ("mode",)

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        frames = values.get("total_frames")
        if values.get("mode") != MODE_FREENOISE or frames is None:
            return None
        problems = freenoise.FreeNoise().problems(frames)
        if problems:
            return "; ".join(problems)
        width, height = values.get("width"), values.get("height")
        if width is None or height is None:
            return None
        needed, limit = video_memory_bytes(width, height, frames, 1, frames), max_run_bytes()
        if needed > limit:
            return (
                f"{frames} frames at {width}x{height} in one FreeNoise pass would need about {needed / 2**30:.0f} "
                f"GiB, more than the {limit / 2**30:.0f} GiB this server allows; make fewer frames, or use the "
                "cross-faded modes (continue), which sample 16 frames at a time"
            )
        return None


@dataclass
class FreeNoiseVideo:
    """The video of the Long Video node's FreeNoise mode."""

    video: torch.Tensor


def freenoise_long_video(
    model,
    positive,
    negative,
    vae,
    clip_vision,
    image,
    plan: ContinuationPlan,
    width,
    height,
    fs,
    fit,
    settings: SamplingSettings,
    *_: object,
) -> FreeNoiseVideo:
    """The Long Video node's FreeNoise mode (``generate_long_video``'s arguments; the clip plan's ``total`` only):
    ``plan.total`` frames of one image-to-video sampled in one pass, with the model's FreeNoise settings (or the
    defaults) and ``settings.seed``."""
    if freenoise.OPTION not in model.model_options.get("transformer_options", {}):
        model = freenoise_model(model, freenoise.FreeNoise())
    frames = plan.total
    model_settings(model).check(frames)
    source = fit_image(image[:1, :, :, :3], width, height, fit)
    pos, neg, latent = build_conditioning(
        positive, negative, vae, clip_vision, source, width, height, frames, fs, 1, fit, "i2v"
    )
    sampler = SegmentSampler(model, vae, settings, 1)
    return FreeNoiseVideo(sampler.decode(sampler.sample(0, pos, neg, latent)))


NODES = [DynamiCrafterFreeNoise]
