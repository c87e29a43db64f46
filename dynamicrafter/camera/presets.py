"""Preset camera moves (pan, tilt, roll, zoom, orbit) and their combination.

Each preset moves the camera smoothly from the first frame's pose (the identity) by ``amount`` at the
last frame: a distance in scene units for moves along an axis, degrees for turns and orbits. Axes are
OpenCV's (x right, y down, z forward), the convention of RealEstate10K and the CamI2V reference; the
reference's camera models see the path relative to the first frame, with translations scaled by the
sampler-side ``trace_scale``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .path import CameraPath, CameraPathError

Move = Callable[[torch.Tensor, float], torch.Tensor]
"""(progress [T] in [0, 1], amount) -> camera-to-world poses [T, 4, 4]."""

ORBIT_RADIUS = 2.0
"""Distance of the point an orbit turns around, in front of the first frame's camera."""


def _identity(t: torch.Tensor) -> torch.Tensor:
    return torch.eye(4, dtype=t.dtype).repeat(t.shape[0], 1, 1)


def _translate(axis: int, sign: float) -> Move:
    def move(t: torch.Tensor, amount: float) -> torch.Tensor:
        c2w = _identity(t)
        c2w[:, axis, 3] = sign * amount * t
        return c2w

    return move


def rotation(axis: int, radians: torch.Tensor) -> torch.Tensor:
    """Right-handed rotations ``[T, 3, 3]`` about the x (0), y (1) or z (2) axis."""
    c, s = torch.cos(radians), torch.sin(radians)
    r = torch.eye(3, dtype=radians.dtype).repeat(radians.shape[0], 1, 1)
    a, b = [(1, 2), (2, 0), (0, 1)][axis]
    r[:, a, a], r[:, a, b], r[:, b, a], r[:, b, b] = c, -s, s, c
    return r


def _turn(axis: int, sign: float) -> Move:
    def move(t: torch.Tensor, amount: float) -> torch.Tensor:
        c2w = _identity(t)
        c2w[:, :3, :3] = rotation(axis, sign * math.radians(amount) * t)
        return c2w

    return move


def _orbit(sign: float) -> Move:
    """Circle the point ``ORBIT_RADIUS`` ahead, always facing it (left: the camera moves to its left)."""

    def move(t: torch.Tensor, amount: float) -> torch.Tensor:
        r = rotation(1, sign * math.radians(amount) * t)
        c2w = _identity(t)
        c2w[:, :3, :3] = r
        centre = torch.tensor([0.0, 0.0, ORBIT_RADIUS], dtype=t.dtype)
        c2w[:, :3, 3] = centre - r[:, :, 2] * ORBIT_RADIUS
        return c2w

    return move


PRESETS: dict[str, tuple[Move, float, str]] = {
    "static": (lambda t, amount: _identity(t), 0.0, "the camera does not move"),
    "pan left": (_turn(1, -1.0), 30.0, "turns left in place (degrees)"),
    "pan right": (_turn(1, 1.0), 30.0, "turns right in place (degrees)"),
    "tilt up": (_turn(0, 1.0), 20.0, "turns up in place (degrees)"),
    "tilt down": (_turn(0, -1.0), 20.0, "turns down in place (degrees)"),
    "roll clockwise": (_turn(2, 1.0), 30.0, "rolls clockwise about its view axis (degrees)"),
    "roll anticlockwise": (_turn(2, -1.0), 30.0, "rolls anticlockwise about its view axis (degrees)"),
    "zoom in": (_translate(2, 1.0), 1.0, "moves forward, a dolly in (scene units)"),
    "zoom out": (_translate(2, -1.0), 1.0, "moves back, a dolly out (scene units)"),
    "truck left": (_translate(0, -1.0), 1.0, "slides left (scene units)"),
    "truck right": (_translate(0, 1.0), 1.0, "slides right (scene units)"),
    "pedestal up": (_translate(1, -1.0), 1.0, "slides up (scene units)"),
    "pedestal down": (_translate(1, 1.0), 1.0, "slides down (scene units)"),
    "orbit left": (_orbit(1.0), 45.0, "circles to the left around the subject ahead (degrees)"),
    "orbit right": (_orbit(-1.0), 45.0, "circles to the right around the subject ahead (degrees)"),
}
"""name -> (move, default amount, what it does). OpenCV y points down, so "up" is -y."""


def preset_c2w(name: str, frames: int, amount: float | None = None) -> torch.Tensor:
    """Camera-to-world poses ``[frames, 4, 4]`` (float64) of a preset move."""
    if name not in PRESETS:
        raise CameraPathError(f"unknown camera preset {name!r}; the presets are: {', '.join(PRESETS)}")
    if frames < 2:
        raise CameraPathError(f"a camera path needs at least 2 frames, asked for {frames}")
    move, default, _ = PRESETS[name]
    amount = default if amount is None else amount
    if not math.isfinite(amount):
        raise CameraPathError(f"the amount of {name!r} must be a finite number, got {amount}")
    t = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)
    return move(t, float(amount))


def preset(name: str, frames: int, amount: float | None = None) -> CameraPath:
    """A preset move as a :class:`CameraPath`."""
    return CameraPath.from_c2w(preset_c2w(name, frames, amount))


def combine(first: CameraPath, second: CameraPath) -> CameraPath:
    """Both moves at once: at each frame ``second``'s move is made in ``first``'s moved camera frame.

    Both paths are taken relative to their first frame; the result starts at ``first``'s first pose.
    """
    if first.frames != second.frames:
        raise CameraPathError(f"cannot combine camera paths of {first.frames} and {second.frames} frames")
    a, b = first.c2w, second.c2w
    b_relative = torch.linalg.inv(b[:1]) @ b
    return CameraPath.from_c2w(a @ b_relative)
