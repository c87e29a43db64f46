"""What a model file (or a picture) really is, from its first bytes, whatever its name says.

A file saved under the wrong extension, a Git LFS pointer left by ``git clone`` without git-lfs, or a web
page saved instead of the file all fail deep inside the loaders with messages about mmap or zip records;
:func:`sniff` tells them apart so the error can say what the file is and what to do.
"""

from __future__ import annotations

import os
import pickletools
import struct
from pathlib import Path
from typing import Literal

# Standard library only: scripts/run checks its arguments with this before anything is installed.

FileKind = Literal[
    "empty", "torch_zip", "torch_pickle", "safetensors", "lfs_pointer", "html", "json", "text", "unknown"
]

_HEAD_BYTES = 512
_MAX_SAFETENSORS_HEADER = 100 * 2**20  # safetensors itself refuses headers over 100 MB
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"

DESCRIPTIONS: dict[str, str] = {
    "torch_zip": "a PyTorch checkpoint (zip)",
    "torch_pickle": "a PyTorch checkpoint in the legacy pickle format",
    "safetensors": "a safetensors file",
}

ADVICE: dict[str, str] = {
    "empty": "the file is empty (0 bytes): the download or copy did not finish. Download it again.",
    "lfs_pointer": "this is a Git LFS pointer (a small text file that stands for the real file), not the model: "
    "the repository was cloned without git-lfs. Run `git lfs pull` in the clone, or download the file "
    "itself from its Hugging Face page (the 'download' button), about 3-10 GB.",
    "html": "this is a web page (HTML), not a model: a browser or tool saved an error or login page instead of the "
    "file. Download the file again from its Hugging Face page (the 'download' button), or with the "
    "'DynamiCrafter Download Model' node.",
    "json": "this is a JSON text (often a server's error reply), not a model. Download the file again from its "
    "Hugging Face page, or with the 'DynamiCrafter Download Model' node.",
    "text": "this is a text file, not a model. Download the checkpoint again from its Hugging Face page.",
    "unknown": "it is neither a PyTorch checkpoint nor a safetensors file (its first bytes are {head}). It may be "
    "damaged or another kind of file: download it again.",
}
"""What to tell the user for a file that is no model at all ({head}: its first bytes in hex)."""


def _is_safetensors_head(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (header_size,) = struct.unpack("<Q", head[:8])
    return 2 <= header_size <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


def sniff_bytes(head: bytes) -> FileKind:
    """The kind of file that starts with ``head`` (its first few hundred bytes)."""
    if not head:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "torch_zip"
    if _is_safetensors_head(head):
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch_pickle"
    if head.startswith(_LFS_POINTER):
        return "lfs_pointer"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")):
        return "html"
    if text.startswith((b"{", b"[")):
        return "json"
    if len(head) >= 16 and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "text"
    return "unknown"


def sniff(path: str | os.PathLike) -> FileKind:
    with open(path, "rb") as handle:
        return sniff_bytes(handle.read(_HEAD_BYTES))


def not_a_model(path: str | os.PathLike, kind: FileKind) -> str:
    """The problem text for a file that is no model (``kind`` not in :data:`DESCRIPTIONS`)."""
    with open(path, "rb") as handle:
        head = handle.read(16).hex(" ")
    return ADVICE[kind].format(head=head or "none")


def expected_kind(path: str | os.PathLike) -> FileKind:
    """The kind the file's extension promises."""
    return "safetensors" if Path(path).suffix.lower() == ".safetensors" else "torch_zip"


IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def image_kind(path: str | os.PathLike) -> str | None:
    """The picture format of ``path`` from its signature (PNG, JPEG, WebP, GIF, BMP, TIFF), else None."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for signature, kind in IMAGE_SIGNATURES.items() if head.startswith(signature)), None)


_DATA_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset")
"""Objects a weights file may name in its pickle (tensors, their storages, ordered dicts, bytes)."""
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)


def pickle_code_globals(data: bytes, pickles: int = 4) -> list[str]:
    """The objects a (legacy or raw) pickle stream names beyond plain tensor data, read without running it:
    what unpickling would import and call (e.g. ``posix.system``). Reads up to ``pickles`` pickles in a row
    (a legacy PyTorch file has four before its raw data); stops quietly where the stream is damaged."""
    import io

    stream, names = io.BytesIO(data), []
    for _ in range(pickles):
        strings: list[object] = []
        memo: dict[object, object] = {}
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name in _STRING_OPS:
                    strings.append(arg)
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = strings[-1] if strings else None
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = strings[-1] if strings else None
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    strings.append(memo.get(arg))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:  # noqa: BLE001  (a damaged or ended stream: what was read so far counts)
            break
    return [name for name in names if not name.startswith(_DATA_GLOBALS)]
