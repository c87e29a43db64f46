"""Motion advisor: look at a finished clip and suggest the next run's steps, CFG, fs and prompt."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import prompts
from .answers import extract_json, one_line, quote_answer
from .client import DirectorConnection, chat
from .errors import DirectorError
from .media import frame_strip, png_data_url

STEPS_RANGE = (10, 100)
CFG_RANGE = (1.0, 15.0)
FS_RANGE = (1, 60)


@dataclass(frozen=True)
class Settings:
    """The sampling settings of one run."""

    steps: int
    cfg: float
    fs: int
    prompt: str


@dataclass(frozen=True)
class Advice:
    """Suggested settings (already clamped to sane ranges) and a readable explanation."""

    settings: Settings
    explanation: str


def _number(value: Any, kind: type) -> float | int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return round(number) if kind is int else number


def _clamp(name: str, value: Any, kind: type, bounds: tuple, current: Any, notes: list[str]) -> Any:
    number = _number(value, kind) if value is not None else None
    if number is None:
        if value is not None:
            notes.append(f"kept {name} {current} (the suggestion {str(value)[:30]!r} is not a number)")
        return current
    low, high = bounds
    clamped = min(max(number, low), high)
    if clamped != number:
        notes.append(f"{name} {number:g} was clamped to {clamped:g}")
    return kind(clamped)


def parse_advice(answer: str, current: Settings) -> Advice:
    """Read the model's JSON suggestion; missing or unusable fields keep the current value."""
    data = extract_json(answer)
    if not isinstance(data, dict):
        raise DirectorError(f"the model's answer is not a JSON object of settings: {quote_answer(answer)}")
    notes: list[str] = []
    steps = _clamp("steps", data.get("steps"), int, STEPS_RANGE, current.steps, notes)
    cfg = round(_clamp("cfg", data.get("cfg"), float, CFG_RANGE, current.cfg, notes), 2)
    fs = _clamp("fs", data.get("fs"), int, FS_RANGE, current.fs, notes)
    prompt = one_line(str(data.get("prompt") or "")) or current.prompt
    explanation = one_line(str(data.get("explanation") or data.get("reason") or ""))
    if notes:
        explanation = (explanation + " " if explanation else "") + "(" + "; ".join(notes) + ")"
    changes = [
        f"{name} {old} -> {new}"
        for name, old, new in (("steps", current.steps, steps), ("cfg", current.cfg, cfg), ("fs", current.fs, fs))
        if old != new
    ]
    summary = "Changes: " + (", ".join(changes) if changes else "none to steps, cfg or fs")
    if prompt != current.prompt:
        summary += "; new prompt"
    return Advice(Settings(steps, cfg, fs, prompt), f"{explanation}\n{summary}".strip())


def advise(
    conn: DirectorConnection,
    frames: torch.Tensor,
    current: Settings,
    frame_count: int = 4,
    goal: str = "",
    temperature: float = 0.0,
    seed: int | None = None,
    abort_check: Callable[[], None] | None = None,
) -> Advice:
    """Show the model a strip of evenly spaced frames and the settings used; return its clamped suggestion."""
    strip, indices = frame_strip(frames, frame_count)
    settings = {"steps": current.steps, "cfg": current.cfg, "fs": current.fs, "prompt": current.prompt}
    messages = prompts.advisor_messages(
        png_data_url(strip, max_side=1536), settings, indices, int(frames.shape[0]), goal
    )
    answer = chat(conn, messages, temperature=temperature, seed=seed, abort_check=abort_check)
    return parse_advice(answer, current)
