"""A picture of a camera path: top view and side view of the camera positions and view directions.

Drawn in plain torch (no plotting library): each panel shows the positions as dots coloured from blue
(first frame) to red (last), a short line from each along the camera's view direction, and a grey cross
at the first camera. Returned as a ComfyUI-style IMAGE tensor ``[1, H, W, 3]`` in [0, 1].
"""

from __future__ import annotations

import torch

from .path import CameraPath

BACKGROUND = 0.97
GRID = 0.85
MARGIN = 0.12


def _panel_coordinates(points: torch.Tensor, size: int, scale: float, centre: torch.Tensor) -> torch.Tensor:
    """2-D scene points [N, 2] (right, up) -> pixel (row, col), one scale for both axes."""
    half = size * (0.5 - MARGIN)
    col = size / 2 + (points[:, 0] - centre[0]) * half / scale
    row = size / 2 - (points[:, 1] - centre[1]) * half / scale
    return torch.stack([row, col], dim=-1)


def _stamp(canvas: torch.Tensor, pixels: torch.Tensor, colours: torch.Tensor, radius: int) -> None:
    """Paint squares of ``radius`` at ``pixels`` [N, 2] with ``colours`` [N, 3] on ``canvas`` [3, S, S]."""
    size = canvas.shape[-1]
    centres = pixels.round().long()
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            rows, cols = centres[:, 0] + dr, centres[:, 1] + dc
            inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
            canvas[:, rows[inside], cols[inside]] = colours[inside].T


def _segments(start: torch.Tensor, end: torch.Tensor, steps: int = 24) -> torch.Tensor:
    """Points along each segment: [N * steps, 2]."""
    t = torch.linspace(0, 1, steps, dtype=start.dtype)[None, :, None]
    return (start[:, None] + (end - start)[:, None] * t).reshape(-1, 2)


def _panel(positions: torch.Tensor, directions: torch.Tensor, size: int) -> torch.Tensor:
    """One view: ``positions`` and ``directions`` [T, 2] in (right, up) panel axes."""
    canvas = torch.full((3, size, size), BACKGROUND)
    canvas[:, size // 2, :] = GRID
    canvas[:, :, size // 2] = GRID
    extent = torch.cat([positions.amin(0), positions.amax(0)]).reshape(2, 2)
    centre = extent.mean(0)
    scale = float((extent[1] - extent[0]).max() / 2) + 0.3
    frames = positions.shape[0]
    ramp = torch.linspace(0, 1, frames)
    colours = torch.stack([ramp, 0.25 * torch.ones(frames), 1 - ramp], dim=-1)
    tips = positions + directions * 0.3 * scale / 1.3
    line = _panel_coordinates(_segments(positions, tips), size, scale, centre)
    _stamp(canvas, line, colours.repeat_interleave(24, dim=0) * 0.8, 0)
    _stamp(canvas, _panel_coordinates(positions, size, scale, centre), colours, max(1, size // 128))
    first = _panel_coordinates(positions[:1], size, scale, centre)
    cross = torch.cat(
        [first + torch.tensor([[d, 0.0]]) for d in range(-4, 5)]
        + [first + torch.tensor([[0.0, d]]) for d in range(-4, 5)]
    )
    _stamp(canvas, cross, torch.full((cross.shape[0], 3), 0.3), 0)
    return canvas


def preview(path: CameraPath, size: int = 256) -> torch.Tensor:
    """Top view (x right, z up the page) beside side view (z right, up = -y): ``[1, size, 2 size, 3]``."""
    c2w = path.c2w
    c2w = (torch.linalg.inv(c2w[:1]) @ c2w).float()
    positions, forward = c2w[:, :3, 3], c2w[:, :3, 2]
    top = _panel(positions[:, [0, 2]], forward[:, [0, 2]], size)
    side_pos = torch.stack([positions[:, 2], -positions[:, 1]], dim=-1)
    side_dir = torch.stack([forward[:, 2], -forward[:, 1]], dim=-1)
    side = _panel(side_pos, side_dir, size)
    divider = torch.full((3, size, 2), 0.5)
    picture = torch.cat([top, divider, side], dim=-1)[:, :, : 2 * size]
    return picture.permute(1, 2, 0).unsqueeze(0).clamp(0, 1)
