"""The CamI2V reference's camera guidance: after CFG it adds ``(camera_cfg - 1) * w(t) * (cond - cond without
camera)`` (``w`` 1, or ``cos((1 - t / 999) * pi / 2)`` for its cosine schedule), before the guidance rescale.

As a host pre-CFG function it moves the unconditional prediction so that the host's CFG (and the pack's guidance
rescale after it, which reads the unchanged conditional prediction, as the reference's does) gives that sum.
"""

from __future__ import annotations

import math

import comfy.samplers
import torch
from comfy_api.latest import io

from .adapter.family import COND_CAMERA
from .adapter.inputs import CATEGORY
from .adapter.validation import CheckedNode

SCHEDULES = ("constant", "cosine")


def _without_camera(cond: dict) -> dict:
    return {**cond, "model_conds": {k: v for k, v in cond["model_conds"].items() if k != COND_CAMERA}}


def camera_guidance(scale: float, schedule: str):
    """A ``sampler_pre_cfg_function`` giving the reference's camera guidance with scale ``scale``."""

    def pre_cfg(args: dict) -> list[torch.Tensor]:
        out = args["conds_out"]
        cfg = args["cond_scale"]
        if len(out) != 2 or out[1] is None or math.isclose(cfg, 1.0) or math.isclose(scale, 1.0):
            return out  # the reference applies it only with CFG (two predictions)
        conds = args["conds"][0]
        if not any(COND_CAMERA in c.get("model_conds", {}) for c in conds):
            return out
        model, sigma = args["model"], args["sigma"]
        stripped = [_without_camera(c) for c in conds]
        without = comfy.samplers.calc_cond_batch(model, [stripped], args["input"], sigma, args["model_options"])[0]
        weight = torch.ones_like(sigma)
        if schedule == "cosine":
            t = model.model_sampling.timestep(sigma).float()
            weight = torch.cos((1.0 - t / 999) * math.pi / 2).to(sigma)
        k = (scale - 1.0) * weight.reshape(-1, *([1] * (out[0].ndim - 1))).to(out[0])
        return [out[0], out[1] - k * (out[0] - without) / (cfg - 1.0)]

    return pre_cfg


class DynamiCrafterCameraGuidance(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterCameraGuidance",
            display_name="DynamiCrafter Camera Guidance",
            category=f"{CATEGORY}/camera",
            description="The CamI2V reference's camera guidance scale: above 1 the camera path is followed more "
            "closely (one more model call per step). 1 = off, the reference demos' default. Needs CFG above 1.",
            inputs=[
                io.Model.Input("model", tooltip="The camera model."),
                io.Float.Input(
                    "camera_cfg", default=1.0, min=0.0, max=10.0, step=0.1, tooltip="Camera guidance scale (1 = off)."
                ),
                io.Combo.Input(
                    "schedule",
                    options=list(SCHEDULES),
                    default="constant",
                    tooltip="constant, or cosine: full at the last steps, none at the first (the reference's two).",
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, camera_cfg: float, schedule: str) -> io.NodeOutput:
        patched = model.clone()
        patched.set_model_sampler_pre_cfg_function(camera_guidance(camera_cfg, schedule))
        return io.NodeOutput(patched)


NODES = [DynamiCrafterCameraGuidance]
