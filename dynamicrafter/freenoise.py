"""FreeNoise (LongerCrafter): one coherent video of many more frames from the 16-frame model, in plain PyTorch.

Two pieces, as the FreeNoise paper and its release (``AILab-CVC/FreeNoise``, for VideoCrafter) define them:

* **Noise rescheduling** (:func:`reschedule_noise`): the start noise of the frames after the first window is
  a local shuffle of earlier frames' noise, block by block of ``stride`` frames, so every window sees
  correlated noise.
* **Window fusion** (:func:`windowed_attention`): each temporal attention runs in overlapping windows of
  ``window`` frames (starts ``0, stride, 2 stride, ...``) and each frame's outputs are averaged over the
  windows holding it, weighted ``1, 2, ..., window/2, ..., 2, 1`` by its place in each window
  (:func:`window_weights`), before the output projection.

DynamiCrafter adds per-frame image tokens (the Resampler makes 16 blocks of 16, block ``i`` for frame
``i`` of a 16-frame clip). The rule here: each window is a clip as the model knows it, so in every window
a frame's image cross-attention reads the block of its position in that window, and the results are fused
with the same weights (:func:`windowed_image_attention`). The text part and every other layer see the
whole video. With one window (frames == window) nothing is windowed: the model runs exactly as without
FreeNoise.

Beyond the release: when ``(frames - window)`` is not a multiple of ``stride`` the release leaves the last
frames outside every window (their attention output is zero) and its noise loop fails; here a last window
ending at the last frame is added, and the last (shorter) noise block is a shuffle of as many frames.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attention import AttentionFn

DEFAULT_WINDOW = 16
DEFAULT_STRIDE = 4
MAX_FRAMES = 1024
"""The longest video one pass may make (activation memory grows with the frame count)."""
OPTION = "dynamicrafter_freenoise"
"""``transformer_options`` entry holding a :class:`FreeNoise` (set by the model patch)."""
WINDOWS = "dynamicrafter_freenoise_windows"
"""Per model call: the window spans, for the spatial layers' image tokens (set by the UNet)."""
TEMPORAL_WINDOWS = "dynamicrafter_freenoise_temporal_windows"
"""Per model call: the window spans, for the temporal attention (set by the temporal transformers)."""

Spans = tuple[tuple[int, int], ...]


def window_spans(frames: int, window: int, stride: int) -> Spans:
    """``(start, end)`` of every window: starts ``0, stride, ...`` while a whole window fits, plus one ending
    at the last frame when those leave frames uncovered."""
    spans = [(s, s + window) for s in range(0, frames - window + 1, stride)]
    if spans[-1][1] < frames:
        spans.append((frames - window, frames))
    return tuple(spans)


def window_weights(length: int) -> list[int]:
    """A frame's weight by its place in a window of ``length``: rising from 1 to the middle, then falling to 1."""
    half = (length + 1) // 2
    rising = list(range(1, half + 1))
    return rising + rising[: length - half][::-1]


@dataclass(frozen=True)
class FreeNoise:
    """The settings: window length and stride in frames (defaults: the release's 16 and 4)."""

    window: int = DEFAULT_WINDOW
    stride: int = DEFAULT_STRIDE

    def problems(self, frames: int | None = None, max_window: int = 16) -> list[str]:
        """What is wrong with these settings (and a video of ``frames`` frames), in words; empty when fine."""
        out = []
        if not 2 <= self.window <= max_window:
            out.append(
                f"the FreeNoise window is {self.window} frames; it must be 2 to {max_window} (the model makes "
                f"{max_window}-frame clips)"
            )
        if not 1 <= self.stride <= self.window:
            out.append(
                f"the FreeNoise stride is {self.stride}; it must be at least 1 and at most the window "
                f"({self.window}) so that the windows overlap or touch"
            )
        if frames is not None and frames < self.window:
            out.append(
                f"the FreeNoise window ({self.window} frames) is longer than the video ({frames} frames): "
                "use at least as many frames as the window, or a shorter window"
            )
        if frames is not None and frames > MAX_FRAMES:
            out.append(f"{frames} frames is more than one FreeNoise pass makes ({MAX_FRAMES}); make fewer frames")
        return out

    def check(self, frames: int | None = None) -> None:
        problems = self.problems(frames)
        if problems:
            raise ValueError("; ".join(problems))

    def spans(self, frames: int) -> Spans | None:
        """The windows of a ``frames``-frame video, or None when one window holds it all (the plain model)."""
        self.check(frames)
        if frames == self.window:
            return None
        return window_spans(frames, self.window, self.stride)


def reschedule_noise(noise: torch.Tensor, window: int, stride: int, seed: int) -> torch.Tensor:
    """FreeNoise's start noise from i.i.d. noise ``[B, C, T, h, w]``: a new tensor, ``noise`` unchanged.

    Going forward from frame ``window`` in blocks of ``stride``, the block at ``f`` takes the frames
    ``f - window .. f - window + stride - 1`` (as they are by then) in an order shuffled by Python's
    ``random.Random(seed)``, the generator the release seeds (``random.seed``) before its loop.
    """
    out = noise.clone()
    frames = noise.shape[2]
    shuffler = random.Random(seed)
    for start in range(window, frames, stride):
        count = min(stride, frames - start)
        order = list(range(start - window, start - window + count))
        shuffler.shuffle(order)
        out[:, :, start : start + count] = out[:, :, order]
    return out


def _fuse(spans: Spans, frames: int, like: torch.Tensor, dim: int, run: Callable) -> torch.Tensor:
    """Σ_w weight · run(start, end) / Σ_w weight along ``dim`` of ``like``'s shape (float32, window by window)."""
    shape = [1] * like.ndim
    shape[dim] = -1
    value = torch.zeros(like.shape, dtype=torch.float32, device=like.device)
    count = torch.zeros(frames, dtype=torch.float32, device=like.device)
    for start, end in spans:
        weights = torch.tensor(window_weights(end - start), dtype=torch.float32, device=like.device)
        value.narrow(dim, start, end - start).add_(run(start, end).float() * weights.view(shape))
        count[start:end] += weights
    return (value / count.view(shape)).to(like.dtype)


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    attention: AttentionFn,
    spans: Spans,
    options: dict | None = None,
) -> torch.Tensor:
    """Self-attention over frames ``[N, T, inner]`` run per window and fused (the release's temporal attention)."""
    frames = q.shape[1]

    def run(start: int, end: int) -> torch.Tensor:
        part = lambda t: t[:, start:end].contiguous()  # noqa: E731
        return attention(part(q), part(k), part(v), heads, transformer_options=options)

    return _fuse(spans, frames, q, 1, run)


def windowed_image_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    attention: AttentionFn,
    spans: Spans,
    options: dict | None = None,
) -> torch.Tensor:
    """Image cross-attention of frames ``q [(b T), n, inner]`` to the tokens of their place in each window.

    ``k``/``v`` are ``[(b P), m, inner]``: ``m`` tokens for each of ``P`` positions (P >= the window); in a
    window starting at ``s`` frame ``f`` reads position ``f - s``. Fused over the windows like the frames'
    temporal attention.
    """
    window = spans[0][1] - spans[0][0]
    frames = _frames_of(spans)
    videos = q.shape[0] // frames
    positions = k.shape[0] // videos
    qv = q.view(videos, frames, *q.shape[1:])
    kv, vv = (t.view(videos, positions, *t.shape[1:])[:, :window].reshape(-1, *t.shape[1:]) for t in (k, v))

    def run(start: int, end: int) -> torch.Tensor:
        out = attention(qv[:, start:end].reshape(-1, *q.shape[1:]), kv, vv, heads, transformer_options=options)
        return out.view(videos, end - start, *out.shape[1:])

    return _fuse(spans, frames, qv, 1, run).view(q.shape)


def _frames_of(spans: Spans) -> int:
    return max(end for _, end in spans)
