"""Audio for the soundtrack: decode with PyAV, fit to the clip length with a fade-out, ComfyUI AUDIO dicts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DirectorError


def decode(path: Path, max_seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream to float32 [channels, samples] at its own rate (stops after ``max_seconds``)."""
    import av  # the pack's dependency; imported here so the rest of the director works without it

    try:
        container = av.open(str(path))
    except Exception as exc:  # av raises its own error classes per cause
        raise DirectorError(f"cannot open audio file {path}: {exc}") from None
    with container:
        if not container.streams.audio:
            raise DirectorError(f"{path} holds no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        if rate <= 0:
            raise DirectorError(f"{path}: unknown sample rate")
        limit = None if max_seconds is None else int(np.ceil(max_seconds * rate))
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if limit is not None and total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except Exception as exc:
            raise DirectorError(f"cannot decode audio file {path}: {exc}") from None
    if not chunks:
        raise DirectorError(f"{path} decoded to no audio samples")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
    if limit is not None:
        waveform = waveform[:, :limit]
    return waveform, rate


def fit_length(waveform: torch.Tensor, sample_rate: int, seconds: float, fade_out_s: float = 0.5) -> torch.Tensor:
    """Trim (or pad with silence) [channels, samples] to ``seconds`` and fade the last ``fade_out_s`` to zero."""
    target = max(1, int(round(seconds * sample_rate)))
    clip = waveform[:, :target].clone()
    sounding = clip.shape[1]
    fade = min(int(round(fade_out_s * sample_rate)), sounding // 2)
    if fade > 0:
        ramp = torch.linspace(1.0, 0.0, fade, dtype=clip.dtype)
        clip[:, sounding - fade:] *= ramp
    if sounding < target:
        clip = torch.cat([clip, clip.new_zeros(clip.shape[0], target - sounding)], dim=1)
    return clip


def to_comfy_audio(waveform: torch.Tensor, sample_rate: int) -> dict[str, Any]:
    """ComfyUI's AUDIO value: {"waveform": [batch, channels, samples], "sample_rate": int}."""
    return {"waveform": waveform.unsqueeze(0).contiguous(), "sample_rate": int(sample_rate)}
