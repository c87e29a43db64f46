"""ToonCrafter sketch guidance across a keyframe chain: sketches for frames of the whole chained video, each handed
to the segment clip that shows it (both clips at a keyframe join), which :mod:`.sketch` then guides as the
'ToonCrafter Sketch Guidance' node guides one clip."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.latest import io

from ..dynamicrafter.chain import chain_length, segments_showing
from ..dynamicrafter.config import SKETCH_ENCODER_FILE, SKETCH_ENCODER_FP16_FILE
from . import chain_queue
from .chain_queue import queued_chain_problem
from .sketch import guide_frames, listed_frames, percent_problem, sketch_encoder_problem, sketched_frames

ENCODER, SKETCHES, FRAMES = "sketch_encoder", "sketches", "sketch_frames"
PERCENTS = ("sketch_start_percent", "sketch_end_percent")
QUEUE_CHECK_FRAMES = 1_000_000
"""Frames a list is checked against when queued (more than any chain): the chain's length is known at run time."""


def chain_sketch_inputs() -> list[io.Input]:
    """The keyframe chain's optional sketch inputs."""
    return [
        io.ControlNet.Input(
            ENCODER,
            optional=True,
            tooltip=f"Optional: ToonCrafter's sketch encoder ({SKETCH_ENCODER_FILE} or {SKETCH_ENCODER_FP16_FILE} "
            "in models/controlnet) from the stock 'Load ControlNet Model', to steer chosen frames with 'sketches'.",
        ),
        io.Image.Input(
            SKETCHES,
            optional=True,
            tooltip="Optional: line drawings, one per frame in sketch_frames, in that order (any size: fitted "
            "like the keyframes). Needs sketch_encoder.",
        ),
        io.String.Input(
            FRAMES,
            default="",
            optional=True,
            tooltip="Frames of the WHOLE chained video the sketches are for, counted from 0 over its output "
            "frames, in increasing order, e.g. '7, 22' or '18-20' (-1 = last). With 16-frame segments keyframe "
            "i is frame 15*i; a sketch there guides both segments that show it. Empty: one sketch per frame. "
            "Frames without a sketch get no guidance.",
        ),
        io.Float.Input(
            "sketch_strength",
            default=0.6,
            min=0.0,
            max=2.0,
            step=0.01,
            optional=True,
            tooltip="How strongly the sketches steer (0 = not at all; the reference's control_scale is 0.6).",
        ),
        io.Float.Input(
            PERCENTS[0], default=0.0, min=0.0, max=1.0, step=0.001, optional=True, tooltip="Guide from this point."
        ),
        io.Float.Input(
            PERCENTS[1], default=1.0, min=0.0, max=1.0, step=0.001, optional=True, tooltip="Stop guiding here."
        ),
        io.Boolean.Input(
            "sketch_invert",
            default=True,
            optional=True,
            tooltip="On: dark lines on a light background (as drawn). Off: light lines on black.",
        ),
    ]


@dataclass(frozen=True)
class SketchSettings:
    """How the sketches steer: as the Sketch Guidance node's strength, start/end percent and invert."""

    strength: float
    start: float
    end: float
    invert: bool


def wiring_problem(encoder: bool, sketches: bool, text: str) -> str | None:
    """Why the connected sketch inputs (``encoder`` / ``sketches``: connected or not) cannot guide, or None."""
    if encoder != sketches:
        missing, given = (SKETCHES, ENCODER) if encoder else (ENCODER, SKETCHES)
        return (
            f"'{given}' is connected but '{missing}' is not: the sketch guidance needs both ToonCrafter's sketch "
            "encoder (stock 'Load ControlNet Model') and the sketches; connect the other, or disconnect this one"
        )
    if not sketches and text.strip():
        return f"'{FRAMES}' lists frames but no '{SKETCHES}' are connected: connect the sketches or clear the list"
    return None


def chain_sketch_problem(values: Mapping[str, Any]) -> str | None:
    """What the node can check when queued (wired inputs are there, as None, when connected): the wiring, the
    frame list's form and the percent range."""
    text = values.get(FRAMES) or ""
    problem = wiring_problem(ENCODER in values, SKETCHES in values, text)
    problem = problem or percent_problem(values.get(PERCENTS[0]), values.get(PERCENTS[1]), PERCENTS)
    if problem is None and text.strip():
        try:
            listed_frames(text, QUEUE_CHECK_FRAMES, FRAMES)
        except ValueError as error:
            problem = f"{FRAMES}: {error}"
    return problem


class ChainSketchChecks:
    """The keyframe chain's queue-time checks of its sketch inputs and of its keyframe count (when the graph
    tells it, :mod:`.chain_queue`); mixed in before :class:`.CheckedNode`."""

    QUEUE_TIME_LINKS = (ENCODER, SKETCHES)

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        problem = chain_sketch_problem(values)
        if problem is None and values.get("keyframes") is None:  # queued: the pictures are not here yet
            hidden = getattr(cls, "hidden", None)
            problem = queued_chain_problem(getattr(hidden, "unique_id", None), values)
        return problem


@dataclass(frozen=True)
class ChainSketches:
    """The sketches of a chain and, per segment, (frame within the segment, sketch) for each frame it guides."""

    encoder: Any
    sketches: torch.Tensor
    placed: list[list[tuple[int, int]]]
    settings: SketchSettings

    def guide(self, segment: int, positive, negative) -> tuple:
        """Segment ``segment``'s conditioning with its sketches (unchanged without any)."""
        placed = self.placed[segment]
        if not placed:
            return positive, negative
        s = self.settings
        frames, picks = [frame for frame, _ in placed], [sketch for _, sketch in placed]
        return guide_frames(
            positive, negative, self.encoder, self.sketches[picks], frames, s.strength, s.start, s.end, s.invert
        )


def plan_chain_sketches(
    encoder: Any, sketches: torch.Tensor | None, text: str, keyframes: int, frames: int, settings: SketchSettings
) -> ChainSketches | None:
    """Each sketch's segment(s) for a chain of ``keyframes`` and ``frames``-frame segments; None = no guidance
    (no sketches, or strength 0). Raises a clear error for sketches that do not fit the chain."""
    problem = wiring_problem(encoder is not None, sketches is not None, text) or percent_problem(
        settings.start, settings.end, PERCENTS
    )
    if problem is None and encoder is not None:
        problem = sketch_encoder_problem(encoder)
    if problem is not None:
        raise ValueError(problem)
    if sketches is None:
        return None
    length = chain_length(keyframes, frames)
    try:
        chosen = sketched_frames(text, length, sketches.shape[0], FRAMES)
    except ValueError as error:
        raise ValueError(
            f"{error} ({keyframes} keyframes with {frames}-frame segments make {length} frames, 0-{length - 1}, "
            f"keyframe i at frame {frames - 1}*i)"
        ) from error
    if settings.strength == 0:
        return None
    placed: list[list[tuple[int, int]]] = [[] for _ in range(keyframes - 1)]
    for sketch, frame in enumerate(chosen):
        for segment, local in segments_showing(frame, keyframes, frames):
            placed[segment].append((local, sketch))
    return ChainSketches(encoder, sketches, placed, settings)


chain_queue.register()  # the count of a queued chain's pictures, on a running server
