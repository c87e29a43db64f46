"""The example pictures and the template browser's thumbnails, drawn here so the pack ships no third-party images."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from .builders import END_PICTURE, LINES_PICTURE, MIDDLE_PICTURE, RESTYLE_PICTURE, START_PICTURE
from .graph import CONDITIONING, Workflow

PICTURE_SIZE = (512, 320)


def draw_picture(sun_height: float) -> np.ndarray:
    """A sunset over the sea, ``uint8 [H, W, 3]``; ``sun_height`` 1 = high in the sky, 0 = on the horizon."""
    width, height = PICTURE_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.58 * height
    dusk = 1.0 - sun_height
    t = np.clip(y / horizon, 0, 1)[..., None]
    sky_top = np.array([60 - 30 * dusk, 80 - 50 * dusk, 160 - 60 * dusk], np.float32)
    sky_low = np.array([250, 170 - 60 * dusk, 90 - 40 * dusk], np.float32)
    sky = sky_top * (1 - t) + sky_low * t
    sun_x, sun_y, radius = 0.62 * width, horizon - (0.08 + 0.32 * sun_height) * height, 0.07 * width
    dist = np.hypot(x - sun_x, y - sun_y)
    glow = np.exp(-((dist / (radius * 3.5)) ** 2))[..., None]
    sky = sky + glow * np.array([60, 40, 10], np.float32)
    sun = (dist < radius)[..., None]
    sky = np.where(sun, np.array([255, 236 - 40 * dusk, 170 - 80 * dusk], np.float32), sky)
    depth = np.clip((y - horizon) / (height - horizon), 0, 1)[..., None]
    sea = np.array([40, 60, 110], np.float32) * (1 - depth) + np.array([12, 22, 50], np.float32) * depth
    waves = 0.5 + 0.5 * np.sin(x / 9.0 + 0.35 * y + 3.0 * np.sin(y / 7.0))
    path = np.exp(-(((x - sun_x) / (width * 0.06 * (1 + 2 * depth[..., 0]))) ** 2))
    sea = sea + (waves * path)[..., None] * np.array([150, 100, 40], np.float32) * (0.4 + 0.6 * sun_height)
    image = np.where((y >= horizon)[..., None], sea, sky)
    island = (y > horizon - 38 * np.exp(-(((x - 0.18 * width) / (0.09 * width)) ** 2))) & (y < horizon + 2)
    image = np.where(island[..., None], np.array([25, 20, 35], np.float32), image)
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_lines(pixels: np.ndarray, threshold: float = 24.0) -> np.ndarray:
    """The outlines of a picture, white on black (what lineart and canny ControlNets read), ``uint8 [H, W, 3]``."""
    gray = pixels.astype(np.float32).mean(axis=-1)
    dy, dx = np.gradient(gray)
    lines = np.where(np.hypot(dx, dy) > threshold, 255, 0).astype(np.uint8)
    return np.repeat(lines[..., None], 3, axis=-1)


def blue_hour(pixels: np.ndarray) -> np.ndarray:
    """The same picture in a cold, dim evening light: a new look for the video-to-video restyle."""
    tinted = pixels.astype(np.float32) * np.array([0.35, 0.5, 0.95], np.float32) + np.array([0, 6, 28], np.float32)
    return np.clip(tinted, 0, 255).astype(np.uint8)


PICTURES: dict[str, Callable[[], np.ndarray]] = {
    START_PICTURE: lambda: draw_picture(1.0),
    MIDDLE_PICTURE: lambda: draw_picture(0.55),
    END_PICTURE: lambda: draw_picture(0.15),
    LINES_PICTURE: lambda: draw_lines(draw_picture(1.0)),
    RESTYLE_PICTURE: lambda: blue_hour(draw_picture(1.0)),
}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(workflow: Workflow) -> np.ndarray:
    """The template browser's picture: the example picture cropped to the video's shape (start | end)."""
    node = next((n for n in workflow.nodes if n.id == CONDITIONING), None)
    width, height = workflow.size or (node.value("width"), node.value("height"))
    names = list(workflow.pictures) or ([START_PICTURE, END_PICTURE] if "end_image" in node.links else [START_PICTURE])
    tiles = [_crop(PICTURES[name](), width / height) for name in names]
    joined = np.concatenate(tiles, axis=1)
    image = Image.fromarray(joined)
    image.thumbnail((400, 300), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _crop(pixels: np.ndarray, aspect: float) -> np.ndarray:
    height, width = pixels.shape[:2]
    if width / height > aspect:
        keep = round(height * aspect)
        left = (width - keep) // 2
        return pixels[:, left : left + keep]
    keep = round(width / aspect)
    top = (height - keep) // 2
    return pixels[top : top + keep]


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def encode_picture(path: str, pixels: np.ndarray) -> bytes:
    return _png(pixels) if path.endswith(".png") else _jpeg(pixels)
