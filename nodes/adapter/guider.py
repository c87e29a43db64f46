"""Separate text and image guidance as a host GUIDER: the original's multi-condition CFG with its video guidance
rescale. The maths is ``dynamicrafter.ddim``'s (``guided_denoised`` in ``ksampler``)."""

from __future__ import annotations

import math

import comfy.samplers
import node_helpers

from .family import COND_IMAGE_TOKENS
from .ksampler import frames_of, guided_denoised


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
