"""What a file really is, from its first bytes: model files and pictures, whatever their names say.

Standard library only, so the project's commands can check their arguments before anything is installed.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

TORCH_ZIP = "a PyTorch checkpoint (zip)"
SAFETENSORS = "a safetensors file"
LEGACY_PICKLE = "a legacy PyTorch pickle"
GIT_LFS_POINTER = "a Git LFS pointer (a few lines of text naming the real file, not the file itself)"
HTML = "an HTML page (a web page saved instead of the file, e.g. a login or error page)"
EMPTY = "an empty file"
TEXT = "a text file"
UNKNOWN = "a file of an unknown format"
MODEL_KINDS = (TORCH_ZIP, SAFETENSORS, LEGACY_PICKLE)
"""The kinds a DynamiCrafter checkpoint can be."""

IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024
"""safetensors refuses headers larger than 100 MB; a larger length means the bytes are something else."""


def _head(path: Path, size: int = 512) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def model_file_kind(path: str | os.PathLike) -> str:
    """One of the kinds above for ``path`` (which must exist): what its bytes are, not what its name says."""
    path = Path(path)
    head = _head(path)
    if not head:
        return EMPTY
    picture = image_file_kind(path)
    if picture is not None:
        return f"a {picture} picture"
    if head.startswith(b"PK\x03\x04"):
        return TORCH_ZIP
    if len(head) >= 9 and head[8:9] == b"{":
        (header_length,) = struct.unpack("<Q", head[:8])
        if header_length <= min(SAFETENSORS_HEADER_LIMIT, path.stat().st_size - 8):
            return SAFETENSORS
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return LEGACY_PICKLE
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        return GIT_LFS_POINTER
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return HTML
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return UNKNOWN
    return TEXT


def image_file_kind(path: str | os.PathLike) -> str | None:
    """The picture format of ``path`` from its signature (PNG, JPEG, WebP, GIF, BMP, TIFF), else None."""
    head = _head(Path(path), 16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for signature, kind in IMAGE_SIGNATURES.items() if head.startswith(signature)), None)

