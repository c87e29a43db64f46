"""Training windows of a video, as ``lvdm/data/webvid.py`` reads them.

A clip is ``length`` frames ``stride`` apart, so it spans ``stride * (length - 1) + 1`` source frames. The
original picks one random window per visit; fine-tuning on a handful of videos encodes every window once
instead, so the windows here are consecutive and non-overlapping (the last partial span is left out). The
fs input is the stride for the 256 model (``frame_stride``) and ``fps // stride`` for the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One training clip of a video: its source frame indices and its fs value."""

    video: int
    frames: tuple[int, ...]
    fs: int


def span(length: int, stride: int) -> int:
    """Source frames one clip covers."""
    return stride * (length - 1) + 1


def clip_starts(total: int, length: int, stride: int) -> list[int]:
    """First frames of the consecutive windows that fit in ``total`` frames (empty when none fits)."""
    if length < 1 or stride < 1:
        raise ValueError(f"clip length and frame stride must be at least 1, got {length} and {stride}")
    width = span(length, stride)
    return list(range(0, total - width + 1, width))


def clip_fs(fs_meaning: str, stride: int, fps: float) -> int:
    """The fs input of a clip: the stride (``frame_stride`` models) or the clip's own fps (``fps`` models)."""
    if fs_meaning == "frame_stride":
        return stride
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"the video's frame rate must be a positive number, got {fps}")
    return max(1, int(fps // stride))


def video_windows(
    video: int, total: int, length: int, stride: int, fs_meaning: str, fps: float, max_clips: int = 0
) -> list[Window]:
    """Every window of one video (at most ``max_clips`` when it is positive); a clear error when none fits."""
    starts = clip_starts(total, length, stride)
    if not starts:
        raise ValueError(
            f"video {video + 1} has {total} frames, but a {length}-frame clip at frame stride {stride} needs "
            f"{span(length, stride)}: use a longer video or a smaller frame stride"
        )
    if max_clips > 0:
        starts = starts[:max_clips]
    fs = clip_fs(fs_meaning, stride, fps)
    return [Window(video, tuple(s + stride * i for i in range(length)), fs) for s in starts]


def captions_for(captions: list[str], videos: int) -> list[str]:
    """One caption per video: as many as videos, or one for all; else a clear error."""
    if len(captions) == 1:
        return captions * videos
    if len(captions) != videos:
        raise ValueError(
            f"{len(captions)} captions for {videos} videos: give one caption per video (one per line) "
            "or a single caption for all"
        )
    return list(captions)
