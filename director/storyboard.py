"""Storyboard: a story split into scene prompts that share one style line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import prompts
from .answers import extract_json, one_line, quote_answer
from .client import DirectorConnection, chat
from .errors import DirectorError


@dataclass(frozen=True)
class Storyboard:
    """The shared style line and one full prompt per scene (scene text + style line)."""

    style: str
    prompts: list[str]

    @property
    def text(self) -> str:
        """One prompt per line, for a multiline STRING."""
        return "\n".join(self.prompts)


def parse_storyboard(answer: str, scenes: int, style_override: str = "") -> Storyboard:
    """Read ``{"style": ..., "scenes": [...]}`` (or a bare list of scenes) and append the style to each scene."""
    data = extract_json(answer)
    style: Any = ""
    items: Any = data
    if isinstance(data, dict):
        style = data.get("style", "")
        items = data.get("scenes", data.get("prompts"))
    if not isinstance(items, list):
        raise DirectorError(f"the model's answer has no list of scenes: {quote_answer(answer)}")
    texts: list[str] = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("prompt") or item.get("description") or item.get("text") or ""
        line = one_line(str(item))
        if line:
            texts.append(line)
    if len(texts) < scenes:
        raise DirectorError(
            f"asked for {scenes} scenes but the model wrote {len(texts)}: {quote_answer(answer)}; "
            "try again with another seed, or ask for fewer scenes"
        )
    texts = texts[:scenes]
    style_line = one_line(style_override) if style_override.strip() else one_line(str(style or ""))
    style_line = style_line.rstrip(".")
    full = [f"{t.rstrip('.')}. Style: {style_line}." if style_line else t for t in texts]
    return Storyboard(style=style_line, prompts=full)


def plan(
    conn: DirectorConnection,
    story: str,
    scenes: int,
    style: str = "",
    style_image_url: str | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
    abort_check: Callable[[], None] | None = None,
) -> Storyboard:
    """Ask the model for a storyboard of ``scenes`` prompts."""
    if not story.strip():
        raise DirectorError("the story is empty: write a few sentences of what should happen")
    if scenes < 1:
        raise DirectorError("the number of scenes must be at least 1")
    messages = prompts.storyboard_messages(story, scenes, style, style_image_url)
    answer = chat(conn, messages, temperature=temperature, seed=seed, abort_check=abort_check)
    return parse_storyboard(answer, scenes, style)
