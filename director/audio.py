"""Audio for the soundtrack: decode with PyAV, fit to the clip length with a fade-out, ComfyUI AUDIO dicts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DirectorError

MAX_SECONDS = 600.0
"""The longest soundtrack the node makes, whatever the frame count and fps say."""
MAX_SAMPLES = int(MAX_SECONDS * 48_000 * 2)
"""At most this many samples over all channels (10 minutes of 48 kHz stereo, about 230 MB as float32)."""


def check_length(seconds: float, source: str) -> float:
    """``seconds`` when it is a usable soundtrack length, else a DirectorError naming ``source`` (where it came from)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise DirectorError(f"the soundtrack length {seconds} s ({source}) is not a positive number")
    if seconds > MAX_SECONDS:
        raise DirectorError(
            f"the soundtrack would last {seconds:.1f} s ({source}); the node makes at most "
            f"{MAX_SECONDS:g} s of audio: check the fps, or cut the video into shorter parts"
        )
    return seconds


def decode(path: Path, max_seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream to float32 [channels, samples] at its own rate (stops after ``max_seconds``,
    and after ``MAX_SECONDS`` in any case)."""
    import av  # the pack's dependency; imported here so the rest of the director works without it

    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001  (av raises its own error classes per cause)
        raise DirectorError(f"cannot open audio file {path.name}: {type(exc).__name__}") from None
    with container:
        if not container.streams.audio:
            raise DirectorError(f"{path.name} holds no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        if rate <= 0:
            raise DirectorError(f"{path.name}: unknown sample rate")
        seconds = MAX_SECONDS if max_seconds is None else min(max_seconds, MAX_SECONDS)
        limit = int(np.ceil(seconds * rate))
        channels = max(1, int(stream.codec_context.channels or stream.channels or 1))
        if limit * channels > MAX_SAMPLES:
            raise DirectorError(
                f"{path.name} has {channels} channels at {rate} Hz: {seconds:g} s of it is more "
                f"than the node's limit of {MAX_SAMPLES} samples; use a 48 kHz stereo file"
            )
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except Exception as exc:  # noqa: BLE001  (as above)
            raise DirectorError(f"cannot decode audio file {path.name}: {type(exc).__name__}") from None
    if not chunks:
        raise DirectorError(f"{path.name} decoded to no audio samples")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
    return waveform[:, :limit], rate


def fit_length(waveform: torch.Tensor, sample_rate: int, seconds: float, fade_out_s: float = 0.5) -> torch.Tensor:
    """Trim (or pad with silence) [channels, samples] to ``seconds`` and fade the last ``fade_out_s`` to zero."""
    target = max(1, round(seconds * sample_rate))
    if target * waveform.shape[0] > MAX_SAMPLES:
        raise DirectorError(
            f"{seconds:g} s at {sample_rate} Hz is more than the soundtrack limit of {MAX_SAMPLES} samples"
        )
    clip = waveform[:, :target].clone()
    sounding = clip.shape[1]
    fade = min(round(fade_out_s * sample_rate), sounding // 2)
    if fade > 0:
        ramp = torch.linspace(1.0, 0.0, fade, dtype=clip.dtype)
        clip[:, sounding - fade :] *= ramp
    if sounding < target:
        clip = torch.cat([clip, clip.new_zeros(clip.shape[0], target - sounding)], dim=1)
    return clip


def to_comfy_audio(waveform: torch.Tensor, sample_rate: int) -> dict[str, Any]:
    """ComfyUI's AUDIO value: {"waveform": [batch, channels, samples], "sample_rate": int}."""
    return {"waveform": waveform.unsqueeze(0).contiguous(), "sample_rate": int(sample_rate)}
