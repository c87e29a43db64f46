"""The Pin Frames node: chosen frames of a video latent kept as they are (a noise mask over whole frames)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from comfy_api.latest import io

from ..dynamicrafter.frames import parse_frame_list
from .adapter.inputs import CATEGORY, FRAMES_MAX
from .adapter.validation import CheckedNode


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
                    "frames",
                    default=16,
                    min=2,
                    max=FRAMES_MAX,
                    tooltip="Frames per video (the conditioning node's frames).",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
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
