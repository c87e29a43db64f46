"""Pictures for the model: ComfyUI IMAGE tensors to PNG data URLs, and a strip of frames from a clip."""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image

from .errors import DirectorError


def _as_frames(image: torch.Tensor) -> torch.Tensor:
    """[H, W, C] or [B, H, W, C] in 0..1 -> [B, H, W, 3] float."""
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
        raise DirectorError(
            f"expected an IMAGE tensor [batch, height, width, channels], got {getattr(image, 'shape', type(image))}"
        )
    frames = image.unsqueeze(0) if image.dim() == 3 else image
    if frames.shape[0] == 0:
        raise DirectorError("the IMAGE input holds no pictures")
    channels = frames.shape[-1]
    if channels == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    elif channels >= 3:
        frames = frames[..., :3]
    else:
        raise DirectorError(f"expected 1, 3 or 4 colour channels, got {channels}")
    return frames.detach().float().cpu()


def to_pil(image: torch.Tensor) -> Image.Image:
    """The first picture of an IMAGE tensor as an 8-bit RGB PIL image."""
    frame = _as_frames(image)[0]
    array = (frame.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array, mode="RGB")


def png_data_url(image: torch.Tensor, max_side: int = 1024) -> str:
    """PNG data URL of the first picture, downscaled so its longer side is at most ``max_side``."""
    picture = to_pil(image)
    scale = max_side / max(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pick_frames(count_total: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices from ``0`` to ``count_total - 1`` (fewer when the clip is shorter)."""
    if count_total <= 0:
        raise DirectorError("the clip holds no frames")
    count = max(1, min(count, count_total))
    if count == 1:
        return [0]
    return sorted({round(i * (count_total - 1) / (count - 1)) for i in range(count)})


def frame_strip(frames: torch.Tensor, count: int = 4, gap: int = 4) -> tuple[torch.Tensor, list[int]]:
    """Evenly spaced frames side by side, left to right in time, with a white gap; returns [1, H, W, 3] and the indices."""
    clip = _as_frames(frames)
    indices = pick_frames(clip.shape[0], count)
    height = clip.shape[1]
    separator = torch.ones(height, gap, 3)
    parts: list[torch.Tensor] = []
    for n, index in enumerate(indices):
        if n:
            parts.append(separator)
        parts.append(clip[index])
    return torch.cat(parts, dim=1).unsqueeze(0), indices
