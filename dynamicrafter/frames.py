"""Frames in the batch, and where the conditioning image latents go in the 16-frame concat input, per task.

Videos are ``[B, C, T, h, w]``; every 2-D layer (and the host's latent) sees the frames folded into the batch,
``[(B T), C, h, w]`` with the frame index fastest. :func:`fold_frames` and :func:`unfold_frames` are the one
place that layout is spelled.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange

Task = Literal["i2v", "interp", "loop"]


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, h, w] -> [(B T), C, h, w]``, frame index fastest."""
    return rearrange(video, "b c t h w -> (b t) c h w")


def unfold_frames(batch: torch.Tensor, frames: int) -> torch.Tensor:
    """``[(B T), C, h, w] -> [B, C, T, h, w]``: the inverse of :func:`fold_frames`."""
    return rearrange(batch, "(b t) c h w -> b c t h w", t=frames)


def concat_latent(
    first: torch.Tensor, frames: int, task: Task = "i2v", last: torch.Tensor | None = None
) -> torch.Tensor:
    """Build ``c_concat`` from per-image latents ``[B, C, h, w]``.

    * ``i2v``: the image latent on every frame.
    * ``interp``: ``first`` on frame 0, ``last`` on the final frame, zeros between.
    * ``loop``: ``first`` on both ends (the caller drops the repeated last frame after decoding).
    """
    if frames < 2 and task != "i2v":
        raise ValueError(f"{task} needs at least 2 frames, got {frames}")
    if task == "i2v":
        return first.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()
    if task == "interp" and last is None:
        raise ValueError("interpolation needs an end image latent ('last')")
    end = first if task == "loop" else last
    if end.shape != first.shape:
        raise ValueError(
            f"start and end latents differ in shape: {tuple(first.shape)} vs {tuple(end.shape)}; "
            "resize both keyframes to the same size"
        )
    out = torch.zeros(first.shape[0], first.shape[1], frames, *first.shape[2:], dtype=first.dtype, device=first.device)
    out[:, :, 0] = first
    out[:, :, -1] = end
    return out


def frames_to_keep(frames: int, task: Task) -> int:
    """Decoded frames to keep: a loop drops its last frame, which repeats the first."""
    return frames - 1 if task == "loop" else frames


def parse_frame_list(text: str, frames: int) -> list[int]:
    """Frame numbers from a list such as ``"0"``, ``"0, 15"``, ``"0-3, -1"`` (0 = first, -1 = last), sorted.

    Raises ValueError naming the bad part; an empty list is refused (pin at least one frame).
    """
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        ends = part.split("-") if not part.startswith("-") else [part]
        if len(ends) > 2 or not all(e.strip().lstrip("-").isdigit() for e in ends):
            raise ValueError(f"'{part}' is not a frame number or range; write e.g. '0', '0, 15' or '0-3, -1'")
        lo, hi = int(ends[0]), int(ends[-1])
        if not (-frames <= lo < frames and -frames <= hi < frames):
            raise ValueError(f"frame {part} is outside the video's frames 0-{frames - 1} (or -1 for the last)")
        lo, hi = lo % frames, hi % frames
        if lo > hi:
            raise ValueError(f"range '{part}' runs backwards; write the smaller frame first")
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise ValueError("no frame given; list the frames to keep, e.g. '0' (first) or '0, -1' (first and last)")
    return sorted(chosen)
