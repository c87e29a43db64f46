"""Fit a conditioning image to the model's grid: cover-and-crop, or fit-and-pad."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

FitMode = Literal["crop", "pad"]


def fit_image(image: torch.Tensor, width: int, height: int, mode: FitMode = "crop") -> torch.Tensor:
    """Resize ``[B, H, W, C]`` images (0..1) to exactly ``height x width``, keeping the aspect ratio.

    ``crop`` scales to cover the frame and cuts the centre (the original's centre crop, without its
    black bars); ``pad`` scales to fit inside and pads with black, as the original does when the
    picture is narrower than the frame. Resizing is antialiased bilinear, like PIL's.
    """
    if image.ndim != 4:
        raise ValueError(f"expected an IMAGE batch [B, H, W, C], got shape {tuple(image.shape)}")
    _, h, w, _ = image.shape
    scale = max(width / w, height / h) if mode == "crop" else min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    x = image.movedim(-1, 1).float()
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if mode == "crop":
        top, left = (new_h - height) // 2, (new_w - width) // 2
        x = x[:, :, top : top + height, left : left + width]
    else:
        pad_h, pad_w = height - new_h, width - new_w
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    return x.movedim(1, -1).contiguous()
