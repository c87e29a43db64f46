"""Soundtrack pick: list the user's audio folder with tags, let the model choose one track by its number."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import prompts
from .answers import extract_json, quote_answer
from .client import DirectorConnection, chat
from .errors import DirectorError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma")
MAX_TRACKS = 200
_WORDS = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class Track:
    """One audio file and the words that describe it."""

    path: Path
    tags: str

    @property
    def name(self) -> str:
        return self.path.name


def _tags_from_name(path: Path) -> str:
    return " ".join(_WORDS.findall(path.stem.replace("_", " ")))


def read_tags(folder: Path) -> dict[str, str]:
    """Tags from ``tags.json`` ({"file.mp3": "calm, piano"} or lists) or ``tags.txt`` ("file.mp3: calm, piano")."""
    tags: dict[str, str] = {}
    json_path, txt_path = folder / "tags.json", folder / "tags.txt"
    if json_path.is_file():
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DirectorError(f"{json_path} is not valid JSON ({exc}); expected {{\"file.mp3\": \"calm, piano\"}}") from None
        if not isinstance(data, dict):
            raise DirectorError(f"{json_path} must map file names to tags, e.g. {{\"file.mp3\": \"calm, piano\"}}")
        for name, value in data.items():
            tags[str(name)] = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    elif txt_path.is_file():
        for line in txt_path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            if not sep:
                name, sep, value = line.partition("\t")
            if sep:
                tags[name.strip()] = value.strip()
    return tags


def scan_library(folder: str | Path) -> list[Track]:
    """The audio files of ``folder`` (not recursive, sorted by name) with their tags."""
    path = Path(str(folder).strip()).expanduser()
    if not str(folder).strip():
        raise DirectorError("no music folder given: type the path of a folder holding your audio files")
    if not path.is_dir():
        raise DirectorError(f"music folder not found: {path}")
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS),
                   key=lambda p: p.name.lower())
    if not files:
        raise DirectorError(f"no audio files in {path} (looked for {', '.join(AUDIO_EXTENSIONS)})")
    if len(files) > MAX_TRACKS:
        log.warning("director: %s holds %d audio files; offering the first %d by name", path, len(files), MAX_TRACKS)
        files = files[:MAX_TRACKS]
    tags = read_tags(path)
    by_lower = {k.lower(): v for k, v in tags.items()}
    return [Track(f, tags.get(f.name) or by_lower.get(f.name.lower()) or _tags_from_name(f)) for f in files]


def track_lines(tracks: list[Track]) -> list[str]:
    """The numbered list shown to the model (numbers start at 1)."""
    return [f"{n}. {t.name} - {t.tags}" for n, t in enumerate(tracks, start=1)]


def parse_choice(answer: str, tracks: list[Track]) -> tuple[Track, str]:
    """The track the answer names: by number (JSON ``index`` or a lone number), else by exact file name."""
    reason = ""
    index: Any = None
    try:
        data = extract_json(answer)
    except DirectorError:
        data = None
    if isinstance(data, dict):
        index = data.get("index", data.get("track"))
        reason = str(data.get("reason") or "")
    elif isinstance(data, int):
        index = data
    if isinstance(index, str) and index.strip().isdigit():
        index = int(index.strip())
    elif isinstance(index, float) and index.is_integer():
        index = int(index)
    if isinstance(index, int) and not isinstance(index, bool) and 1 <= index <= len(tracks):
        return tracks[index - 1], reason
    if index is None:
        lowered = answer.lower()
        named = [t for t in tracks if t.name.lower() in lowered]
        if len(named) == 1:
            return named[0], reason
        numbers = {int(n) for n in re.findall(r"\b\d+\b", answer)}
        if len(numbers) == 1 and 1 <= (only := numbers.pop()) <= len(tracks):
            return tracks[only - 1], reason
    raise DirectorError(f"the model's answer names no track from the list (numbers 1 to {len(tracks)}): "
                        f"{quote_answer(answer)}; try again, or another model")


def choose(conn: DirectorConnection, description: str, tracks: list[Track], temperature: float = 0.0,
           seed: int | None = None, abort_check: Callable[[], None] | None = None) -> tuple[Track, str]:
    """Ask the model which track suits the clip; only names and tags are sent, never the audio."""
    if not description.strip():
        raise DirectorError("the clip description is empty: connect the prompt or describe the clip")
    messages = prompts.soundtrack_messages(description, track_lines(tracks))
    answer = chat(conn, messages, temperature=temperature, seed=seed, abort_check=abort_check)
    return parse_choice(answer, tracks)
