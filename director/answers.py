"""Reading the model's answers: JSON with or without code fences, and one-line prompts."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import DirectorError

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)\s*```", re.DOTALL)
_LABEL = re.compile(r"^(motion\s+)?prompt\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"


def quote_answer(text: str, limit: int = 200) -> str:
    """The start of an answer, for error messages."""
    text = text.strip()
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def extract_json(text: str) -> Any:
    """Parse the JSON in an answer: plain, inside code fences, or wrapped in prose.

    Raises a DirectorError quoting the first 200 characters of the answer when there is none.
    """
    candidates: list[str] = [text.strip()]
    candidates += [m.group(1) for m in _FENCE.finditer(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise DirectorError(
        f"the model's answer is not the JSON that was asked for: {quote_answer(text)}; "
        "try again with another seed or model"
    )


def one_line(text: str) -> str:
    """A prompt as one clean line: no fences, labels, surrounding quotes or line breaks."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    text = " ".join(text.split())
    text = _LABEL.sub("", text)
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text
