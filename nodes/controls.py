"""Sampler controls as host pieces: separate text and image guidance (a GUIDER), frame pinning (a noise
mask), and the queue-time checks of their inputs. The maths is ``dynamicrafter.sampler``'s."""
from __future__ import annotations

import math

import comfy.samplers
import node_helpers
import torch
from comfy_api.latest import io
from einops import rearrange

from ..dynamicrafter.frames import parse_frame_list
from ..dynamicrafter.sampler import combine_guidance
from .model import COND_IMAGE_TOKENS
from .registry import CATEGORY
from .sampling import frames_of, raw_output, to_host_denoised

IMAGE_CFG_OFF = -1.0
"""image_cfg value meaning "one guidance scale" (the original's default: the image scale follows cfg)."""


def number_problem(name: str, value: float | None, low: float, high: float, also: float | None = None) -> str | None:
    """Why a number input cannot run (NaN, infinite, out of range), or None; ``also`` is one more allowed value."""
    if value is None or value == also:
        return None
    if not math.isfinite(value) or not low <= value <= high:
        extra = f" (or {also:g})" if also is not None else ""
        return f"{name} must be a number from {low:g} to {high:g}{extra}, got {value}"
    return None


def image_cfg_problem(image_cfg: float | None) -> str | None:
    return number_problem("image_cfg", image_cfg, 0.0, 30.0, also=IMAGE_CFG_OFF)


def image_only_conditioning(positive, negative):
    """The third branch of the original multi-condition CFG: the negative's text with the positive's image."""
    tokens = next((entry[1].get(COND_IMAGE_TOKENS) for entry in positive or []), None)
    if tokens is None:
        raise ValueError("separate image guidance needs the DynamiCrafter conditioning: connect the positive and "
                         "negative outputs of a DynamiCrafter conditioning node")
    return node_helpers.conditioning_set_values(negative, {COND_IMAGE_TOKENS: tokens})


class DynamiCrafterGuider(comfy.samplers.CFGGuider):
    """The original's CFG (``combine_guidance``) with a separate image scale and its video guidance rescale.

    The guided output and the rescale are formed from the raw model outputs per video, as the original does.
    """

    def set_conds(self, positive, negative) -> None:
        self.inner_set_conds({"positive": positive, "negative": negative,
                              "image_only": image_only_conditioning(positive, negative)})

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
        sigma, frames = float(timestep.flatten()[0]), frames_of(positive)
        video = lambda d: rearrange(raw_output(self.prediction, x, d, sigma), "(b f) c h w -> b c f h w",  # noqa: E731
                                    f=frames)
        outs = [video(d) for d in denoised]
        guided = combine_guidance(outs[0], outs[1], self.cfg, self.guidance_rescale,
                                  outs[2] if separate else None, self.image_cfg)
        return to_host_denoised(self.prediction, x, rearrange(guided, "b c f h w -> (b f) c h w"), sigma)


def dynamicrafter_guider(model, positive, negative, cfg: float, image_cfg: float | None, guidance_rescale: float,
                         prediction: str) -> DynamiCrafterGuider:
    guider = DynamiCrafterGuider(model)
    guider.set_conds(positive, negative)
    guider.set_guidance(cfg, image_cfg, guidance_rescale, prediction)
    return guider


def pin_mask(samples: torch.Tensor, frames: int, keep: list[int]) -> torch.Tensor:
    """Noise mask ``[B*T, 1, h, w]``: 0 (keep) on the chosen frames of every video, 1 (generate) elsewhere."""
    if samples.shape[0] % frames:
        raise ValueError(f"the latent holds {samples.shape[0]} frames, not a whole number of {frames}-frame videos; "
                         "set frames to the video length of the conditioning node")
    mask = torch.ones(samples.shape[0] // frames, frames, 1, *samples.shape[-2:])
    mask[:, keep] = 0.0
    return mask.flatten(0, 1)


class DynamiCrafterPinFrames(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterPinFrames",
            display_name="DynamiCrafter Pin Frames",
            category=f"{CATEGORY}/sampling",
            description="Keeps chosen frames of a video latent exactly as they are while the sampler makes the rest "
                        "(a noise mask over whole frames). Works with the DynamiCrafter Sampler and stock samplers.",
            inputs=[
                io.Latent.Input("latent", tooltip="A video latent, e.g. VAE Encode of a video's frames, or a run's "
                                                  "output."),
                io.String.Input("pin", default="0",
                                tooltip="Frames to keep: '0' = the first, '0, -1' = first and last, '0-3, 8' = a "
                                        "set. Counted from 0; negative counts from the end."),
                io.Int.Input("frames", default=16, min=2, max=64,
                             tooltip="Frames per video (the conditioning node's frames)."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, pin: str | None = None, frames: int | None = None) -> bool | str:
        if frames is not None and (not isinstance(frames, int) or not 2 <= frames <= 64):
            return f"frames must be a whole number from 2 to 64, got {frames}"
        if pin is not None:
            try:
                parse_frame_list(pin, frames or 64)
            except ValueError as error:
                return str(error)
        return True

    @classmethod
    def execute(cls, latent, pin, frames) -> io.NodeOutput:
        mask = pin_mask(latent["samples"], frames, parse_frame_list(pin, frames))
        return io.NodeOutput({**latent, "noise_mask": mask})


NODES = [DynamiCrafterPinFrames]
