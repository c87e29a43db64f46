"""The example video the video-to-video workflow restyles, drawn here like the pictures, and its MP4 encoding."""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np

from .builders import FRAMES, SOURCE_VIDEO_FILE, VIDEO_FPS
from .pictures import draw_picture


def sunset_frames(frames: int = FRAMES) -> np.ndarray:
    """``uint8 [T, H, W, 3]``: the sun sinking from the start picture's height to the end picture's."""
    return np.stack([draw_picture(height) for height in np.linspace(1.0, 0.15, frames)])


VIDEOS: dict[str, Callable[[], np.ndarray]] = {SOURCE_VIDEO_FILE: sunset_frames}


def encode_video(frames: np.ndarray, fps: float = VIDEO_FPS) -> bytes:
    """H.264 MP4 (yuv420p, near-lossless CRF 12) of ``uint8 [T, H, W, 3]`` frames."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "12", "preset": "slow"}
        stream.codec_context.thread_count = 1  # the same bytes on every run
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()
