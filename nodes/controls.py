"""Sampler controls as host pieces: separate text and image guidance (a GUIDER) and frame pinning (a noise
mask). The maths is ``dynamicrafter.sampler``'s."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import comfy.samplers
import node_helpers
import torch
from comfy_api.latest import io

from ..dynamicrafter.frames import parse_frame_list
from .adapter.ksampler import frames_of, guided_denoised
from .adapter.validation import CheckedNode
from .model import COND_IMAGE_TOKENS
from .registry import CATEGORY


def separate_image_cfg(image_cfg: float) -> float | None:
    """The Sampler's image_cfg as a scale of its own, or None: below 0 means one scale (the original's default)."""
    return None if image_cfg < 0 else image_cfg


def image_only_conditioning(positive, negative):
    """The third branch of the original multi-condition CFG: the negative's text with the positive's image."""
    tokens = next((entry[1].get(COND_IMAGE_TOKENS) for entry in positive or []), None)
    if tokens is None:
        raise ValueError(
            "separate image guidance needs the DynamiCrafter conditioning: connect the positive and "
            "negative outputs of a DynamiCrafter conditioning node"
        )
    return node_helpers.conditioning_set_values(negative, {COND_IMAGE_TOKENS: tokens})


class DynamiCrafterGuider(comfy.samplers.CFGGuider):
    """The original's CFG with a separate image scale and its video guidance rescale (``guided_denoised``)."""

    def set_conds(self, positive, negative) -> None:
        self.inner_set_conds(
            {"positive": positive, "negative": negative, "image_only": image_only_conditioning(positive, negative)}
        )

    def set_guidance(self, cfg: float, image_cfg: float | None, guidance_rescale: float, prediction: str) -> None:
        self.set_cfg(cfg)
        self.image_cfg, self.guidance_rescale, self.prediction = image_cfg, guidance_rescale, prediction

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (the host's signature)
        positive = self.conds.get("positive")
        if math.isclose(self.cfg, 1.0):
            return comfy.samplers.calc_cond_batch(self.inner_model, [positive], x, timestep, model_options)[0]
        separate = self.image_cfg is not None
        conds = [positive, self.conds.get("negative")] + ([self.conds.get("image_only")] if separate else [])
        denoised = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        return guided_denoised(
            self.prediction,
            x,
            float(timestep.flatten()[0]),
            denoised,
            frames_of(positive),
            self.cfg,
            self.guidance_rescale,
            self.image_cfg,
        )


def dynamicrafter_guider(
    model, positive, negative, cfg: float, image_cfg: float | None, guidance_rescale: float, prediction: str
) -> DynamiCrafterGuider:
    guider = DynamiCrafterGuider(model)
    guider.set_conds(positive, negative)
    guider.set_guidance(cfg, image_cfg, guidance_rescale, prediction)
    return guider


def pin_mask(samples: torch.Tensor, frames: int, keep: list[int]) -> torch.Tensor:
    """Noise mask ``[B*T, 1, h, w]``: 0 (keep) on the chosen frames of every video, 1 (generate) elsewhere."""
    if samples.shape[0] % frames:
        raise ValueError(
            f"the latent holds {samples.shape[0]} frames, not a whole number of {frames}-frame videos; "
            "set frames to the video length of the conditioning node"
        )
    mask = torch.ones(samples.shape[0] // frames, frames, 1, *samples.shape[-2:])
    mask[:, keep] = 0.0
    return mask.flatten(0, 1)


class DynamiCrafterPinFrames(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterPinFrames",
            display_name="DynamiCrafter Pin Frames",
            category=f"{CATEGORY}/sampling",
            description="Keeps chosen frames of a video latent exactly as they are while the sampler makes the rest "
            "(a noise mask over whole frames). Works with the DynamiCrafter Sampler and stock samplers.",
            inputs=[
                io.Latent.Input(
                    "latent", tooltip="A video latent, e.g. VAE Encode of a video's frames, or a run's output."
                ),
                io.String.Input(
                    "pin",
                    default="0",
                    tooltip="Frames to keep: '0' = the first, '0, -1' = first and last, '0-3, 8' = a "
                    "set. Counted from 0; negative counts from the end.",
                ),
                io.Int.Input(
                    "frames", default=16, min=2, max=64, tooltip="Frames per video (the conditioning node's frames)."
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def more_problems(cls, values: Mapping[str, Any]) -> str | None:
        pin, frames = values.get("pin"), values.get("frames")
        if pin is None:
            return None
        try:
            parse_frame_list(pin, frames or 64)
        except ValueError as error:
            return f"pin: {error}"
        return None

    @classmethod
    def execute(cls, latent, pin, frames) -> io.NodeOutput:
        mask = pin_mask(latent["samples"], frames, parse_frame_list(pin, frames))
        return io.NodeOutput({**latent, "noise_mask": mask})


NODES = [DynamiCrafterPinFrames]
