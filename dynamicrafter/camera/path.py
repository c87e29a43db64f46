"""Camera paths: the RealEstate10K text format, checks, and the reference's pose normalisation.

A path is a world-to-camera matrix per frame in the OpenCV convention (x right, y down, z forward), as
RealEstate10K and the CamI2V reference (ZGCTroy/CamI2V) store them. Paths are kept in float64, as the
reference reads its files; the model-side steps (:func:`relative_c2w` on) run in float32, as it does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

COLUMNS = 19
"""A RealEstate10K frame line: timestamp, fx fy cx cy (normalised), two distortion slots, 3x4 row-major pose."""
MAX_FRAMES = 10_000
ORTHONORMAL_TOLERANCE = 1e-3
SINGULAR_DETERMINANT = 1e-6


class CameraPathError(ValueError):
    """A camera path or file that cannot be used; the message says what is wrong and where."""

    __module__ = "dynamicrafter"


@dataclass(frozen=True)
class CameraPath:
    """Poses of one camera path: ``w2c`` ``[T, 4, 4]`` float64 (OpenCV convention)."""

    w2c: torch.Tensor

    def __post_init__(self) -> None:
        check_poses(self.w2c)

    @property
    def frames(self) -> int:
        return self.w2c.shape[0]

    @property
    def c2w(self) -> torch.Tensor:
        return torch.linalg.inv(self.w2c)

    @classmethod
    def from_c2w(cls, c2w: torch.Tensor) -> CameraPath:
        check_poses(c2w)
        return cls(torch.linalg.inv(c2w.double()))


def check_poses(poses: torch.Tensor) -> None:
    """Refuse anything but finite ``[T, 4, 4]`` rigid poses (orthonormal rotation, bottom row 0 0 0 1)."""
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise CameraPathError(f"a camera path is [frames, 4, 4] poses, got shape {list(poses.shape)}")
    if poses.shape[0] < 2:
        raise CameraPathError(f"a camera path needs at least 2 frames, got {poses.shape[0]}")
    bad = ~torch.isfinite(poses).flatten(1).all(dim=1)
    if bad.any():
        raise CameraPathError(f"camera pose of frame {int(bad.nonzero()[0])} is not finite (NaN or infinity)")
    rotation = poses[:, :3, :3].double()
    det = torch.linalg.det(rotation)
    singular = det.abs() < SINGULAR_DETERMINANT
    if singular.any():
        frame = int(singular.nonzero()[0])
        raise CameraPathError(f"the rotation of frame {frame} is singular (determinant {float(det[frame]):.3g})")
    eye = torch.eye(3, dtype=rotation.dtype)
    error = (rotation @ rotation.transpose(1, 2) - eye).abs().flatten(1).amax(dim=1)
    skew = error > ORTHONORMAL_TOLERANCE
    if skew.any():
        frame = int(skew.nonzero()[0])
        raise CameraPathError(
            f"the rotation of frame {frame} is not orthonormal (|R R^T - I| = {float(error[frame]):.3g}); "
            "a camera pose is a rotation and a translation"
        )
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=poses.dtype)
    if not torch.allclose(poses[:, 3], bottom.expand(poses.shape[0], 4)):
        raise CameraPathError("the last row of every 4x4 camera pose must be 0 0 0 1")


def read_realestate10k(text: str, name: str = "camera file") -> CameraPath:
    """Parse a RealEstate10K camera file (as the reference's ``np.loadtxt(..., comments="https")``).

    Everything from ``https`` to the end of a line is dropped (the first line is the video's URL); every
    other non-empty line holds 19 numbers. Only the poses are kept: the reference's inference derives
    the intrinsics from the picture size (:func:`intrinsics`).
    """
    rows: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("https", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != COLUMNS:
            raise CameraPathError(
                f"{name}, line {number}: a RealEstate10K camera line has {COLUMNS} numbers (timestamp, "
                f"fx fy cx cy, 2 zeros, a 3x4 world-to-camera pose), found {len(fields)}"
            )
        try:
            rows.append([float(f) for f in fields])
        except ValueError as error:
            raise CameraPathError(f"{name}, line {number}: not a number ({error})") from None
        if len(rows) > MAX_FRAMES:
            raise CameraPathError(f"{name}: more than {MAX_FRAMES} camera lines")
    if not rows:
        raise CameraPathError(f"{name}: no camera lines (is it a RealEstate10K camera file?)")
    data = torch.tensor(rows, dtype=torch.float64)
    w2c = torch.cat([data[:, 7:].reshape(-1, 3, 4), _bottom_rows(data.shape[0], torch.float64)], dim=1)
    try:
        return CameraPath(w2c)
    except CameraPathError as error:
        raise CameraPathError(f"{name}: {error}") from None


def write_realestate10k(path: CameraPath, url: str = "https://example.invalid/camera") -> str:
    """The path as a RealEstate10K text (intrinsics 0.5 0.5 0.5 0.5, as the reference's demo files)."""
    lines = [url]
    for index, pose in enumerate(path.w2c[:, :3].reshape(-1, 12).tolist()):
        lines.append(" ".join([str(index), "0.5 0.5 0.5 0.5 0 0", *(repr(float(v)) for v in pose)]))
    return "\n".join(lines) + "\n"


def _bottom_rows(frames: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([[[0.0, 0.0, 0.0, 1.0]]], dtype=dtype).expand(frames, 1, 4)


def resample(path: CameraPath, frames: int, extract_ratio: float = 1.0) -> CameraPath:
    """``frames`` poses from a path of any length, as the reference's inference does.

    Camera-to-world matrices are interpolated element by element between neighbouring poses at
    ``round(frames / extract_ratio)`` even steps, and the first ``frames`` are kept (``extract_ratio`` < 1
    plays only the start of the path).
    """
    if frames < 2:
        raise CameraPathError(f"a camera path needs at least 2 frames, asked for {frames}")
    if not 0.0 < extract_ratio <= 1.0:
        raise CameraPathError(f"the share of the path to play must be in (0, 1], got {extract_ratio}")
    c2w = path.c2w
    steps = round(frames / extract_ratio)
    weights = torch.linspace(0, c2w.shape[0] - 1, steps, dtype=c2w.dtype)
    left, right = weights.floor().long(), weights.ceil().long()
    mixed = torch.lerp(c2w[left], c2w[right], weights.frac()[:, None, None])[:frames]
    return CameraPath(torch.linalg.inv(mixed))


def relative_c2w(w2c: torch.Tensor, cond_frame: int = 0, trace_scale: float = 1.0) -> torch.Tensor:
    """Camera-to-world poses relative to the conditioning frame, translations scaled: ``[B, T, 4, 4]``.

    ``w2c`` is ``[B, T, 4, 4]``; computed in float32 as the reference's model does.
    """
    c2w = torch.linalg.inv(w2c.float())
    first = c2w[:, cond_frame : cond_frame + 1]
    relative = torch.linalg.inv(first) @ c2w
    relative[:, :, :3, 3] = relative[:, :, :3, 3] * trace_scale
    return relative


def motionctrl_pose(relative: torch.Tensor) -> torch.Tensor:
    """MotionCtrl's 12 numbers per frame: the relative world-to-camera 3x4, row-major ``[B, T, 12]``."""
    return torch.linalg.inv(relative)[:, :, :3, :4].flatten(2)


def intrinsics(height: int, width: int, frames: int, batch: int = 1) -> torch.Tensor:
    """The reference's inference intrinsics for a ``height`` x ``width`` picture: ``[B, T, 3, 3]``.

    Focal length half the longer side in pixels (a 90 degree field of view across it), principal point
    at the centre.
    """
    focal = 0.5 * max(height, width)
    k = torch.tensor([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
    return k.expand(batch, frames, 3, 3).clone()


def plucker(k: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-pixel Plücker rays ``[o x d, d]`` of pixel centres: ``[B, 6, T, height, width]``.

    ``k`` is ``[B, T, 3, 3]``, ``c2w`` ``[B, T, 4, 4]``; ``d`` is the unit ray direction in world space.
    """
    batch, frames = k.shape[:2]
    dtype, device = c2w.dtype, c2w.device
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5
    j, i = torch.meshgrid(rows, cols, indexing="ij")
    i, j = i.reshape(1, 1, -1), j.reshape(1, 1, -1)
    fx, fy = k[..., 0, 0, None], k[..., 1, 1, None]
    cx, cy = k[..., 0, 2, None], k[..., 1, 2, None]
    x, y = (i - cx) / fx, (j - cy) / fy
    directions = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    rays_d = directions @ c2w[..., :3, :3].transpose(-1, -2)
    rays_o = c2w[..., None, :3, 3].expand_as(rays_d)
    rays = torch.cat([torch.linalg.cross(rays_o, rays_d, dim=-1), rays_d], dim=-1)
    return rays.reshape(batch, frames, height, width, 6).permute(0, 4, 1, 2, 3)


def describe(path: CameraPath) -> str:
    """One line for logs: frames, distance travelled and the largest turn from the first frame."""
    c2w = path.c2w
    travel = float((c2w[1:, :3, 3] - c2w[:-1, :3, 3]).norm(dim=-1).sum())
    rel = c2w[0, :3, :3].T @ c2w[:, :3, :3]
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    turn = math.degrees(float(torch.acos(cos).max()))
    return f"{path.frames} frames, travels {travel:.3g}, turns up to {turn:.1f} degrees"
