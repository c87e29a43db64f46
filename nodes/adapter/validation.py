"""Checks of everything a workflow hands a node: widget values, video sizes, memory, pictures.

The host checks a widget's min/max and combo choices when a prompt is queued, but it does not refuse NaN or
infinities, nor bound a text, nor know what a combination of sizes costs; and a node's ``validate_inputs``
that takes an input turns off the host's own min/max check of that input. :class:`CheckedNode` (the base of
every node of the pack outside ``director/``) therefore checks, when a prompt is queued, the inputs the host
does not check well (floats, texts, the video-size inputs), and every input again when the node runs (values
wired from other nodes are only known then, and the host checks no wired value against a widget):

* every INT and FLOAT against its widget's min/max, NaN and infinities refused;
* every COMBO value against the node's own options (when it runs: the host checks the widgets when queued);
* every STRING up to :data:`MAX_TEXT_CHARS`;
* a video size: both sides on the 64-pixel grid, and the memory its frames x width x height x batch need
  (:func:`video_memory_bytes`) within the administrator's :envvar:`DYNAMICRAFTER_MAX_RUN_GB`;
* every IMAGE, when the node runs: an empty or NaN picture is refused, grey and RGBA become RGB;
* whatever else a node checks in its own :meth:`CheckedNode.values_problem` (e.g. a list of frames in a text).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from comfy_api.latest import io

GRID = 64  # the UNet halves the latent three times: pixel sizes must be multiples of 64
MAX_TEXT_CHARS = 100_000
"""Longest text a node accepts (a prompt is at most a few hundred characters)."""

MAX_RUN_GB_ENV = "DYNAMICRAFTER_MAX_RUN_GB"
DEFAULT_MAX_RUN_GB = 40.0
"""Default memory a run may plan for: four 1024 videos (about 23 GiB) fit, 64 frames at 1024x1024 do not."""

SAMPLING_BYTES_PER_VIDEO_PIXEL = 650
"""UNet activation memory per pixel of each frame of each video (cond and uncond together): the 1024 default
run peaks at 8.4 GiB with 2.68 GiB of bf16 weights for 16 x 576 x 1024 pixels (docs/performance.md)."""
OUTPUT_BYTES_PER_PIXEL = 2 * 3 * 4
"""A decoded frame as float32 RGB, held twice (the clips and the joined video)."""

MAX_KEYFRAMES_ENV = "DYNAMICRAFTER_MAX_KEYFRAMES"
DEFAULT_MAX_KEYFRAMES = 64
"""Default bound on a keyframe chain's pictures (63 segments: about 950 frames of 16-frame segments)."""

_SHOWN_OPTIONS = 20


class InputError(ValueError):
    """A value a workflow gave a node that cannot run; the message says which input and what to do."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def widget_problem(spec: io.Input, value: Any) -> str | None:
    """Why ``value`` cannot go to the widget ``spec``, or None. None values (wired inputs) pass."""
    if value is None:
        return None
    name = spec.id
    if isinstance(spec, (io.Int.Input, io.Float.Input)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"{name} must be a number, got {_shown(value)}"
        if not math.isfinite(value):
            return f"{name} is {value}, not a number; set it to a finite value (default {spec.default})"
        if isinstance(spec, io.Int.Input) and value != int(value):
            return f"{name} must be a whole number, got {value}"
        if spec.min is not None and value < spec.min:
            return f"{name} = {value} is below its minimum {spec.min}"
        if spec.max is not None and value > spec.max:
            return f"{name} = {value} is above its maximum {spec.max}"
    elif isinstance(spec, io.Combo.Input):
        options = list(spec.options or [])
        if value not in options:
            listed = ", ".join(map(repr, options[:_SHOWN_OPTIONS]))
            more = f" and {len(options) - _SHOWN_OPTIONS} more" if len(options) > _SHOWN_OPTIONS else ""
            return f"{name} = {_shown(value)} is not one of its choices ({listed}{more})"
    elif isinstance(spec, io.String.Input):
        if not isinstance(value, str):
            return f"{name} must be text, got {_shown(value)}"
        if len(value) > MAX_TEXT_CHARS:
            return f"{name} holds {len(value)} characters; at most {MAX_TEXT_CHARS} are accepted"
    return None


def size_problem(width: int | None, height: int | None) -> str | None:
    """Why a video size cannot run, or None (sizes wired from other nodes are checked at run time)."""
    if width is None or height is None:
        return None
    if width < GRID or height < GRID or width % GRID or height % GRID:
        return (
            f"{width}x{height} is not a multiple of {GRID} in both sides; DynamiCrafter needs e.g. "
            "512x320 (512 / interp), 1024x576 (1024) or 256x256 (256)"
        )
    return None


def max_run_bytes() -> float:
    """The administrator's limit (``DYNAMICRAFTER_MAX_RUN_GB``, GiB; read at each check)."""
    raw = os.environ.get(MAX_RUN_GB_ENV, "").strip()
    try:
        limit = float(raw) if raw else DEFAULT_MAX_RUN_GB
    except ValueError:
        limit = DEFAULT_MAX_RUN_GB
    if not math.isfinite(limit) or limit <= 0:
        limit = DEFAULT_MAX_RUN_GB
    return limit * 2**30


def video_memory_bytes(width: int, height: int, frames: int, batch: int = 1, output_frames: int = 0) -> int:
    """Estimated peak memory of sampling ``batch`` videos of ``frames`` frames, plus ``output_frames`` decoded."""
    pixels = width * height
    return pixels * (frames * batch * SAMPLING_BYTES_PER_VIDEO_PIXEL + output_frames * OUTPUT_BYTES_PER_PIXEL)


def gib(size: float) -> str:
    """A size in GiB as it is: fractions kept (0.25, 1.6), whole numbers without decimals."""
    return f"{size / 2**30:.2f}".rstrip("0").rstrip(".")


def max_keyframes() -> int:
    """The administrator's bound on a keyframe chain's pictures (``DYNAMICRAFTER_MAX_KEYFRAMES``)."""
    try:
        value = int(os.environ.get(MAX_KEYFRAMES_ENV, "").strip() or DEFAULT_MAX_KEYFRAMES)
    except ValueError:
        value = DEFAULT_MAX_KEYFRAMES
    return value if value >= 2 else DEFAULT_MAX_KEYFRAMES


def refuse(problem: str | None) -> None:
    """Raise :class:`InputError` with ``problem`` when there is one."""
    if problem:
        raise InputError(problem)


def chain_problem(keyframes: int, width: int, height: int, frames: int) -> str | None:
    """Whether a keyframe chain of ``keyframes`` pictures fits: the count bound, then the memory of one segment
    sampled plus every frame of the whole chain decoded (checked when the node runs, before anything else)."""
    limit = max_keyframes()
    if keyframes > limit:
        return (
            f"keyframes holds {keyframes} pictures; a chain takes at most {limit} on this server. Split the chain "
            f"into several runs. (An administrator can raise the bound with {MAX_KEYFRAMES_ENV}.)"
        )
    total = (frames - 1) * (keyframes - 1) + 1
    return video_problem({"width": width, "height": height, "frames": frames, "total_frames": total})


def video_problem(values: Mapping[str, Any]) -> str | None:
    """Grid and memory check of a node's ``width``/``height``/``frames``/``batch_size`` (or its long-video
    ``clip_frames``/``total_frames``), before anything is allocated."""
    width, height = values.get("width"), values.get("height")
    problem = size_problem(width, height)
    if problem or width is None or height is None:
        return problem
    frames = values.get("frames") or values.get("clip_frames") or 1
    batch = values.get("batch_size") or 1
    output_frames = values.get("total_frames") or 0
    needed, limit = video_memory_bytes(width, height, frames, batch, output_frames), max_run_bytes()
    if needed <= limit:
        return None
    what = f"{batch} x {frames} frames at {width}x{height}" + (f", {output_frames} frames out" if output_frames else "")
    return (
        f"{what} would need about {gib(needed)} GiB, more than the {gib(limit)} GiB this "
        f"server allows; use the model's own size (512x320, 1024x576 or 256x256), 16 frames and a smaller "
        f"batch. (An administrator can raise the limit with the {MAX_RUN_GB_ENV} environment variable.)"
    )


def as_rgb(name: str, image: Any) -> Any:
    """An IMAGE batch ``[B, H, W, 3]``: grey (1 channel) and grey+alpha or RGBA (2 / 4) become RGB; empty or
    non-finite pictures are refused. Anything that is not a tensor is returned as it is."""
    if not isinstance(image, torch.Tensor):
        return image
    shape = tuple(image.shape)
    if image.ndim != 4:
        raise InputError(f"{name} must be an IMAGE batch [pictures, height, width, channels], got shape {shape}")
    if 0 in shape:
        raise InputError(
            f"{name} is empty (shape {shape}: {shape[0]} pictures of {shape[2]}x{shape[1]}); "
            "connect a picture, e.g. from 'Load Image'"
        )
    channels = shape[-1]
    if channels not in (1, 2, 3, 4):
        raise InputError(f"{name} has {channels} channels; a picture has 3 (RGB), 4 (RGBA) or 1 (grey)")
    if not image.is_floating_point():
        raise InputError(f"{name} holds {image.dtype} values; an IMAGE holds floats from 0 to 1")
    if not bool(torch.isfinite(image).all()):
        raise InputError(f"{name} contains NaN or infinite values; check the node that made it")
    if channels == 3:
        return image
    if channels == 4:
        return image[..., :3]
    return image[..., :1].repeat(1, 1, 1, 3)


def input_problem(specs: list[io.Input], values: Mapping[str, Any]) -> str | None:
    """The first problem among a node's widget values and its video size, or None."""
    for spec in specs:
        if spec.id in values:
            problem = widget_problem(spec, values[spec.id])
            if problem:
                return problem
    return video_problem(values)


def _checked_at_queue_time(spec: io.Input) -> bool:
    """Inputs the node checks itself when queued: those the host checks not at all (floats: NaN; text length)
    and the video-size inputs, whose combination decides the memory. Combos and other INTs stay the host's."""
    sized = spec.id in ("width", "height", "frames", "batch_size", "clip_frames", "total_frames")
    return isinstance(spec, (io.Float.Input, io.String.Input)) or sized


def _queue_time_validator(names: list[str]) -> classmethod:
    """A ``validate_inputs`` whose signature lists ``names``: the host passes it exactly those values, keeps
    its own min/max check for every other input, and reports the message once per listed input."""

    def validate_inputs(cls, **values: Any) -> bool | str:
        return input_problem(cls.define_schema().inputs, values) or cls.values_problem(values) or True

    parameter = inspect.Parameter
    validate_inputs.__signature__ = inspect.Signature(
        [parameter("cls", parameter.POSITIONAL_OR_KEYWORD)]
        + [parameter(name, parameter.POSITIONAL_OR_KEYWORD, default=None) for name in names]
    )
    return classmethod(validate_inputs)


def _checked_execute(execute: Callable[..., Any]) -> classmethod:
    """``execute`` with every input checked (and pictures made RGB) first; positional calls work too."""
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def checked(cls, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(cls, *args, **kwargs)
        specs = cls.define_schema().inputs
        problem = input_problem(specs, bound.arguments) or cls.values_problem(bound.arguments)
        if problem:
            raise InputError(problem)
        for spec in specs:
            if isinstance(spec, io.Image.Input) and spec.id in bound.arguments:
                bound.arguments[spec.id] = as_rgb(spec.id, bound.arguments[spec.id])
        return execute(*bound.args, **bound.kwargs)

    checked.checks_inputs = True
    return classmethod(checked)


class CheckedNode(io.ComfyNode):
    """A node whose inputs are checked when the prompt is queued and again when it runs (module docstring).

    Subclasses define ``define_schema`` and ``execute`` as usual; the checks are added when the class is
    created (the host's per-run class clones keep them and are not wrapped again).
    """

    __module__ = "dynamicrafter"  # as ComfyUI shows the type: never the install path

    QUEUE_TIME_LINKS: tuple[str, ...] = ()
    """Wired inputs whose connection :meth:`values_problem` checks when queued: connected, they reach it as None."""

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        """A node's own checks beyond its widgets' bounds, on the values known so far (wired ones are None at
        queue time); runs after the widget checks passed. None = fine."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if isinstance(execute, classmethod) and not getattr(execute.__func__, "checks_inputs", False):
            cls.execute = _checked_execute(execute.__func__)
        if "define_schema" in cls.__dict__ and "validate_inputs" not in cls.__dict__:
            names = [spec.id for spec in cls.define_schema().inputs if _checked_at_queue_time(spec)]
            names += [name for name in cls.QUEUE_TIME_LINKS if name not in names]
            cls.validate_inputs = _queue_time_validator(names)
