"""Videos longer than one 16-frame clip, from clips: keyframe chains and overlapping continuations.

Pure torch, frames first: every clip is ``[T, ...]`` (ComfyUI IMAGE ``[T, H, W, C]``, or any per-frame
tensor). Two ways of joining clips:

* **Keyframe chain** (:func:`join_segments`): segment ``i`` interpolates keyframe ``i`` -> ``i + 1``, so its
  last frame and the next segment's first frame show the same keyframe; that frame is kept once.
  ``K`` keyframes with ``T``-frame segments give ``(T - 1)(K - 1) + 1`` frames.
* **Continuation with overlap** (:class:`ContinuationPlan`, :func:`join_with_overlap`): clip ``k + 1`` starts
  from frame ``T - N`` of clip ``k``, so their last / first ``N`` frames show the same moment twice; those
  ``N`` frames are crossfaded linearly (:func:`crossfade_weights`), which hides the seam without a cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SEED_RANGE = 2**64


def segment_seed(seed: int, index: int) -> int:
    """Seed of clip ``index``: ``seed + 2 * index``.

    A DynamiCrafter run draws its start noise from ``seed`` and its step noise from ``seed + 1``; the step
    of two keeps every clip's streams apart from every other clip's.
    """
    return (seed + 2 * index) % SEED_RANGE


def chain_length(keyframes: int, frames: int) -> int:
    """Frames of a keyframe chain: each join shows its keyframe once."""
    check_chain(keyframes, frames)
    return (frames - 1) * (keyframes - 1) + 1


def check_chain(keyframes: int, frames: int) -> None:
    """Raise a clear error unless ``keyframes`` (>= 2) and ``frames`` per segment (>= 2) make a chain."""
    if keyframes < 2:
        raise ValueError(
            f"a keyframe chain needs at least 2 keyframes (an IMAGE batch of 2 or more), got {keyframes}; "
            "batch the pictures with 'Batch Images' (all the same size)"
        )
    if frames < 2:
        raise ValueError(f"each segment needs at least 2 frames (its two keyframes), got {frames}")


def keyframe_segments(keyframes: int) -> list[tuple[int, int]]:
    """(start, end) keyframe indices of each segment: (0, 1), (1, 2), ..."""
    check_chain(keyframes, 2)
    return [(i, i + 1) for i in range(keyframes - 1)]


def segments_showing(frame: int, keyframes: int, frames: int) -> list[tuple[int, int]]:
    """(segment, frame within it) of every segment whose clip shows frame ``frame`` of the joined chain, counted
    from 0: one segment, or two at an inner keyframe (the last frame of one segment and the first of the next)."""
    length = chain_length(keyframes, frames)
    if not 0 <= frame < length:
        raise ValueError(f"frame {frame} is outside the chain's frames 0-{length - 1}")
    stride = frames - 1
    segment, local = divmod(frame, stride)
    shown = [(segment - 1, stride)] if local == 0 and segment > 0 else []
    return shown + [(segment, local)] if segment < keyframes - 1 else shown


def join_segments(segments: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate interpolated segments along frames, keeping each shared keyframe once.

    The first frame of every segment after the first is dropped: it shows the keyframe that the previous
    segment already ends on.
    """
    if not segments:
        raise ValueError("no segments to join")
    _check_frames(segments, minimum=2)
    return torch.cat([segments[0], *(segment[1:] for segment in segments[1:])], dim=0)


@dataclass(frozen=True)
class ContinuationPlan:
    """How ``clips`` clips of ``clip_frames`` frames, overlapping by ``overlap``, make ``total`` frames.

    Clip ``k`` starts at output frame ``k * stride`` (``stride = clip_frames - overlap``); a continuation
    is conditioned on frame :attr:`condition_index` of the clip before it, the first frame of the overlap.
    The last clip is cut to end at exactly ``total`` frames.
    """

    total: int
    clip_frames: int
    overlap: int

    def __post_init__(self) -> None:
        if self.clip_frames < 2:
            raise ValueError(f"clips need at least 2 frames, got {self.clip_frames}")
        if not 1 <= self.overlap <= self.clip_frames // 2:
            raise ValueError(
                f"overlap must be between 1 and {self.clip_frames // 2} frames (half a clip, so that "
                f"each frame mixes at most two clips), got {self.overlap}"
            )
        if self.total < 1:
            raise ValueError(f"the video needs at least 1 frame, got {self.total}")

    @property
    def stride(self) -> int:
        """New frames each continuation adds."""
        return self.clip_frames - self.overlap

    @property
    def clips(self) -> int:
        """Clips to generate (the last one may be cut)."""
        if self.total <= self.clip_frames:
            return 1
        return 1 + math.ceil((self.total - self.clip_frames) / self.stride)

    @property
    def condition_index(self) -> int:
        """Frame of the previous clip a continuation starts from: where the overlap begins."""
        return self.clip_frames - self.overlap

    @property
    def untrimmed(self) -> int:
        """Frames of all clips joined, before cutting to ``total``."""
        return self.clip_frames + (self.clips - 1) * self.stride

    def start(self, clip: int) -> int:
        """Output frame index of clip ``clip``'s first frame."""
        return clip * self.stride


def crossfade_weights(overlap: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Weight of the FOLLOWING clip at each of the ``overlap`` shared frames: ``(j + 1) / (overlap + 1)``.

    Strictly between 0 and 1 and rising linearly, so neither clip is cut off at the seam; one shared frame
    is an even mix.
    """
    if overlap < 1:
        raise ValueError(f"overlap must be at least 1, got {overlap}")
    return torch.arange(1, overlap + 1, dtype=torch.float64, device=device).div(overlap + 1).to(dtype)


def blend_overlap(previous: torch.Tensor, following: torch.Tensor, overlap: int) -> torch.Tensor:
    """``previous`` then ``following``, their last / first ``overlap`` frames mixed linearly in pixel space."""
    _check_frames([previous, following], minimum=overlap)
    if overlap < 1:
        raise ValueError(f"overlap must be at least 1, got {overlap}")
    weights = crossfade_weights(overlap, previous.dtype, previous.device)
    weights = weights.view(-1, *([1] * (previous.ndim - 1)))
    mixed = previous[-overlap:] * (1 - weights) + following[:overlap] * weights
    return torch.cat([previous[:-overlap], mixed, following[overlap:]], dim=0)


def join_with_overlap(clips: Sequence[torch.Tensor], overlap: int, total: int | None = None) -> torch.Tensor:
    """Join clips that overlap by ``overlap`` frames (crossfaded), then cut to ``total`` frames if given."""
    if not clips:
        raise ValueError("no clips to join")
    video = clips[0]
    for clip in clips[1:]:
        video = blend_overlap(video, clip, overlap)
    if total is not None:
        if total > video.shape[0]:
            raise ValueError(f"the clips make {video.shape[0]} frames, fewer than the {total} asked for")
        video = video[:total]
    return video


def match_color_stats(image: torch.Tensor, reference: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Shift and scale each colour channel of ``image`` to ``reference``'s mean and spread (IMAGE 0..1).

    Counters the slow brightness / saturation creep of repeated VAE round trips when a continuation
    starts from a generated frame. Channels are the last dimension; the result is clamped to 0..1.
    """
    if image.shape[-1] != reference.shape[-1]:
        raise ValueError(f"channel counts differ: {image.shape[-1]} vs {reference.shape[-1]}")
    dims = tuple(range(image.ndim - 1))
    ref_dims = tuple(range(reference.ndim - 1))
    mean, std = image.mean(dims, keepdim=True), image.std(dims, keepdim=True)
    ref_mean, ref_std = reference.mean(ref_dims), reference.std(ref_dims)
    return ((image - mean) / (std + eps) * ref_std + ref_mean).clamp(0, 1)


def _check_frames(clips: Sequence[torch.Tensor], minimum: int) -> None:
    shape = tuple(clips[0].shape[1:])
    for i, clip in enumerate(clips):
        if clip.shape[0] < minimum:
            raise ValueError(f"clip {i} has {clip.shape[0]} frames; at least {minimum} are needed")
        if tuple(clip.shape[1:]) != shape:
            raise ValueError(f"clip {i} has frames of shape {tuple(clip.shape[1:])}, clip 0 has {shape}")
