"""Music files for the soundtrack tests: a sine tone in WAV, FLAC or MP3, written with PyAV."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_tone(path: Path, seconds: float, rate: int, freq: float, channels: int = 2, codec: str | None = None) -> None:
    """A sine tone written with PyAV (codec from the extension: wav, flac, mp3)."""
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame"}[path.suffix]
    layout = "stereo" if channels == 2 else "mono"
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.time_base = Fraction(1, rate)
        block = 1152 if codec == "libmp3lame" else 1024
        pts = 0
        for start in range(0, len(tone), block):
            chunk = np.tile(tone[start : start + block], (channels, 1))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
