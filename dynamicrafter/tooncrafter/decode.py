"""Decoding a whole ToonCrafter video as the original scripts do: chunks of 16 frames, then a second pass.

The second pass decodes the video again without latents 1 and T-2; its decodes of latents T/2-1 and T/2
replace the first pass's (frames 7 and 8 of 16), which the original does to sharpen the middle frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ChunkDecoder = Callable[[torch.Tensor], torch.Tensor]
"""Decodes ``[n, z, h, w]`` VAE latents of consecutive frames of one video to ``[n, 3, H, W]`` pixels."""

CHUNK_FRAMES = 16
"""The original decodes ``temporal_length`` (16) frames per decoder call."""
MIDDLE_PASS_MIN_FRAMES = 6
"""Below this many frames the original's second pass would not decode latents T/2-1 and T/2 again."""


def _decode_chunks(decode: ChunkDecoder, latents: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    return torch.cat([decode(latents[i : i + chunk_frames]) for i in range(0, latents.shape[0], chunk_frames)])


def uses_middle_pass(frames: int, middle_pass: bool = True) -> bool:
    """Whether :func:`decode_video` decodes a second time (needs ``MIDDLE_PASS_MIN_FRAMES`` frames)."""
    return middle_pass and frames >= MIDDLE_PASS_MIN_FRAMES


def decoder_calls(frames: int, chunk_frames: int = CHUNK_FRAMES, middle_pass: bool = True) -> int:
    """How many times :func:`decode_video` calls its chunk decoder for a video of ``frames`` frames."""
    calls = math.ceil(frames / chunk_frames)
    return calls + (math.ceil((frames - 2) / chunk_frames) if uses_middle_pass(frames, middle_pass) else 0)


def decode_video(
    decode: ChunkDecoder, latents: torch.Tensor, chunk_frames: int = CHUNK_FRAMES, middle_pass: bool = True
) -> torch.Tensor:
    """Decode the ``[T, z, h, w]`` latents of one video as the original ToonCrafter scripts do.

    ``decode`` gets consecutive frames, at most ``chunk_frames`` at a time (its temporal layers and
    reference injections see each chunk as a video). With ``middle_pass`` (and T >= 6) the video is
    decoded again without latents 1 and T-2, and that pass's decodes of latents T/2-1 and T/2 replace
    output frames T/2-1 and T/2 (frames 7 and 8 of 16).
    """
    total = latents.shape[0]
    frames = _decode_chunks(decode, latents, chunk_frames)
    if uses_middle_pass(total, middle_pass):
        keep = [i for i in range(total) if i not in (1, total - 2)]
        again = _decode_chunks(decode, latents[keep], chunk_frames)
        middle = total // 2
        # latent i sits at position i - 1 of ``keep`` for 2 <= i <= T - 3
        frames[middle - 1 : middle + 1] = again[middle - 2 : middle]
    return frames
