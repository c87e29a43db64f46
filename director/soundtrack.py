"""Soundtrack pick: list the user's audio folder with tags, let the model choose one track by its number.

The folder comes from the workflow, so it is read only inside the allowed roots (ComfyUI's input folder and the
admin's ``DYNAMICRAFTER_AUDIO_DIRS``): ``..``, absolute paths elsewhere and symlinks leading out are refused.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import prompts
from .answers import extract_json, quote_answer
from .client import DirectorConnection, chat
from .errors import DirectorError
from .policy import AUDIO_DIRS_ENV

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma")
MAX_TRACKS = 200
MAX_TAGS_BYTES = 1 << 20
MAX_TAG_CHARS = 200
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


def _inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path``, with every symlink followed, lies in one of ``roots``."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return any(real == root or real.is_relative_to(root) for root in roots)


def _not_allowed(folder: str) -> DirectorError:
    return DirectorError(
        "the music folder must be inside ComfyUI's input folder (type a path relative to it, e.g. 'music' for "
        f"input/music) or inside a folder the server admin lists in {AUDIO_DIRS_ENV}; '..', other absolute paths "
        "and symlinks that lead elsewhere are refused"
    )


def resolve_folder(folder: str, roots: list[Path]) -> Path:
    """The folder a workflow names, inside the allowed ``roots`` (resolved; the first is the input folder).

    A relative path is looked up in each root in turn; an absolute one (or ``~``) must lie in a root.
    """
    text = str(folder).strip()
    if not text:
        raise DirectorError("no music folder given: type a folder inside ComfyUI's input folder, e.g. 'music'")
    if "\x00" in text or len(text) > 1024:
        raise _not_allowed(text)
    path = Path(text).expanduser()
    if ".." in path.parts or ".." in Path(text.replace("\\", "/")).parts:
        raise _not_allowed(text)
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    allowed = [c for c in candidates if _inside(c, roots)]
    if not allowed:
        raise _not_allowed(text)
    for candidate in allowed:
        if candidate.is_dir():
            return candidate
    raise DirectorError(
        f"music folder not found: '{text[:200]}' (a relative path is looked up in ComfyUI's input "
        f"folder and in the folders of {AUDIO_DIRS_ENV})"
    )


def _read_small(path: Path) -> str:
    if path.stat().st_size > MAX_TAGS_BYTES:
        raise DirectorError(f"{path.name} is larger than {MAX_TAGS_BYTES >> 20} MB: keep only names and tags in it")
    return path.read_text(encoding="utf-8", errors="replace")


def _tags_file(folder: Path, name: str, roots: list[Path]) -> Path | None:
    path = folder / name
    return path if _is_file(path) and _inside(path, roots) else None


def read_tags(folder: Path, roots: list[Path]) -> dict[str, str]:
    """Tags from ``tags.json`` ({"file.mp3": "calm, piano"} or lists) or ``tags.txt`` ("file.mp3: calm, piano");
    a tags file whose symlink leads outside ``roots`` is ignored."""
    tags: dict[str, str] = {}
    json_path, txt_path = _tags_file(folder, "tags.json", roots), _tags_file(folder, "tags.txt", roots)
    if json_path is not None:
        try:
            data = json.loads(_read_small(json_path))
        except (OSError, ValueError) as exc:
            raise DirectorError(
                f'tags.json is not valid JSON ({type(exc).__name__}); expected {{"file.mp3": "calm, piano"}}'
            ) from None
        if not isinstance(data, dict):
            raise DirectorError('tags.json must map file names to tags, e.g. {"file.mp3": "calm, piano"}')
        for name, value in data.items():
            tags[str(name)] = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    elif txt_path is not None:
        for line in _read_small(txt_path).splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            if not sep:
                name, sep, value = line.partition("\t")
            if sep:
                tags[name.strip()] = value.strip()
    return {name: value[:MAX_TAG_CHARS] for name, value in tags.items()}


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def scan_library(folder: str, roots: list[Path]) -> list[Track]:
    """The audio files of ``folder`` inside ``roots`` (not recursive, sorted by name) with their tags;
    files whose symlink leads outside the roots are left out."""
    path = resolve_folder(folder, roots)
    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and _is_file(p) and _inside(p, roots)),
        key=lambda p: p.name.lower(),
    )
    if not files:
        raise DirectorError(
            f"no audio files in the music folder '{str(folder).strip()[:200]}' "
            f"(looked for {', '.join(AUDIO_EXTENSIONS)})"
        )
    if len(files) > MAX_TRACKS:
        log.warning("director: %s holds %d audio files; offering the first %d by name", path, len(files), MAX_TRACKS)
        files = files[:MAX_TRACKS]
    tags = read_tags(path, roots)
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
    raise DirectorError(
        f"the model's answer names no track from the list (numbers 1 to {len(tracks)}): "
        f"{quote_answer(answer)}; try again, or another model"
    )


def choose(
    conn: DirectorConnection,
    description: str,
    tracks: list[Track],
    temperature: float = 0.0,
    seed: int | None = None,
    abort_check: Callable[[], None] | None = None,
) -> tuple[Track, str]:
    """Ask the model which track suits the clip; only names and tags are sent, never the audio."""
    if not description.strip():
        raise DirectorError("the clip description is empty: connect the prompt or describe the clip")
    messages = prompts.soundtrack_messages(description, track_lines(tracks))
    answer = chat(conn, messages, temperature=temperature, seed=seed, abort_check=abort_check)
    return parse_choice(answer, tracks)
