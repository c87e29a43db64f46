"""Output files a server wrote: which names a saving node gives, and whether a file is whole.

A server killed mid-save leaves a half-written file under the item's prefix; a restarted server has no
history of it. These checks let the client tell a finished output (download it) from a torn one (run
the item again).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

SAVERS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "SaveVideo": lambda inputs: "mp4" if inputs.get("format", "auto") in ("auto", "mp4") else None,
    "SaveWEBM": lambda inputs: "webm",
    "SaveAnimatedWEBP": lambda inputs: "webp",
    "SaveAnimatedPNG": lambda inputs: "png",
}
"""Output nodes that write one file ``<prefix>_00001_.<ext>``: what a restarted server can be asked for."""
PROBED_COUNTERS = range(1, 4)
"""File counters looked at: a half-written first file makes the rerun write ``_00002_``."""


def predicted_extension(class_type: str, inputs: Mapping[str, Any]) -> str | None:
    """The extension the saving node writes, or None when its file name cannot be predicted."""
    saver = SAVERS.get(class_type)
    return saver(inputs) if saver else None


def predicted_names(stem: str, extension: str) -> list[str]:
    return [f"{stem}_{counter:05}_.{extension}" for counter in PROBED_COUNTERS]


def _mp4_complete(data: bytes) -> bool:
    offset, seen = 0, set()
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset:offset + 4], "big"), data[offset + 4:offset + 8]
        if size == 1 and offset + 16 <= len(data):
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            return False
        seen.add(kind)
        offset += size
    return offset == len(data) and b"moov" in seen


def is_complete(data: bytes, extension: str) -> bool:
    """Whether a file a killed server may have left half-written is whole (MP4 boxes add up, PNG has IEND...)."""
    if not data:
        return False
    if extension in ("mp4", "mov", "m4v"):
        return _mp4_complete(data)
    if extension == "png":
        return data.startswith(b"\x89PNG") and data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    if extension == "webp":
        return data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") + 8 == len(data)
    if extension == "webm":
        return len(data) > 64
    return True
