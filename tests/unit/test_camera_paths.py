"""Camera presets, their combination, the file reader's checks and the preview picture."""

from __future__ import annotations

import math

import pytest
import torch

from dynamicrafter.camera import CameraPath, CameraPathError, combine, preset, preview, read_realestate10k
from dynamicrafter.camera.path import motionctrl_pose, relative_c2w, write_realestate10k
from dynamicrafter.camera.presets import PRESETS


def _last(path: CameraPath) -> torch.Tensor:
    return path.c2w[-1]


@pytest.mark.parametrize(
    ("name", "axis", "sign"),
    [("zoom in", 2, 1), ("zoom out", 2, -1), ("truck left", 0, -1), ("truck right", 0, 1), ("pedestal up", 1, -1)],
)
def test_moves_go_where_their_names_say(name, axis, sign):
    end = _last(preset(name, 16, 0.8))
    expected = torch.zeros(3, dtype=torch.float64)
    expected[axis] = sign * 0.8
    torch.testing.assert_close(end[:3, 3], expected)
    torch.testing.assert_close(end[:3, :3], torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("name", "forward_x", "forward_y"),
    [("pan left", -1, 0), ("pan right", 1, 0), ("tilt up", 0, -1), ("tilt down", 0, 1)],
)
def test_turns_point_the_camera_where_their_names_say(name, forward_x, forward_y):
    forward = _last(preset(name, 16, 30.0))[:3, 2]
    s = math.sin(math.radians(30.0))
    torch.testing.assert_close(forward[:2], torch.tensor([forward_x * s, forward_y * s], dtype=torch.float64))
    assert _last(preset(name, 16, 30.0))[:3, 3].abs().max() == 0


def test_orbit_keeps_looking_at_the_same_point():
    c2w = preset("orbit left", 16, 60.0).c2w
    assert c2w[-1, 0, 3] < 0  # moves to its left
    # every camera's view ray passes through the point 2 units ahead of the first camera
    centre = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    to_centre = centre - c2w[:, :3, 3]
    torch.testing.assert_close(to_centre / to_centre.norm(dim=-1, keepdim=True), c2w[:, :3, 2])


def test_every_preset_starts_at_the_identity_and_has_the_asked_frames():
    for name in PRESETS:
        path = preset(name, 12)
        assert path.frames == 12
        torch.testing.assert_close(path.c2w[0], torch.eye(4, dtype=torch.float64))


def test_combining_makes_both_moves():
    both = combine(preset("pan left", 16, 20.0), preset("zoom in", 16, 1.0))
    end = _last(both)
    torch.testing.assert_close(end[:3, :3], _last(preset("pan left", 16, 20.0))[:3, :3])
    torch.testing.assert_close(end[:3, 3], end[:3, 2])  # moved 1 along its turned view axis
    with pytest.raises(CameraPathError, match="16 and 8 frames"):
        combine(preset("pan left", 16), preset("zoom in", 8))


def test_file_round_trip_and_model_poses():
    path = combine(preset("orbit right", 16), preset("tilt down", 16))
    back = read_realestate10k(write_realestate10k(path))
    torch.testing.assert_close(back.w2c, path.w2c)
    pose = motionctrl_pose(relative_c2w(back.w2c[None]))
    assert pose.shape == (1, 16, 12)
    torch.testing.assert_close(pose[0, 0], torch.eye(4)[:3].flatten(), atol=1e-6, rtol=0)


def _line(values: list[float]) -> str:
    return "0 0.5 0.5 0.5 0.5 0 0 " + " ".join(map(str, values))


IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no camera lines"),
        ("https://youtube.com/x\n1 2 3\n", "line 2: a RealEstate10K camera line has 19 numbers"),
        (_line(IDENTITY) + "\n" + _line(IDENTITY[:-1] + ["nan"]), "frame 1 is not finite"),
        (_line(IDENTITY) + "\n" + _line([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), "rotation of frame 1 is singular"),
        (_line(IDENTITY) + "\n" + _line([2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]), "frame 1 is not orthonormal"),
        (_line(IDENTITY), "at least 2 frames"),
        (_line(IDENTITY[:-1] + ["x"]) + "\n", "line 1: not a number"),
        ('{"frames": [1, 2, 3]}', "line 1: a RealEstate10K camera line has 19 numbers"),
    ],
)
def test_bad_files_are_refused_clearly(text, message):
    with pytest.raises(CameraPathError, match=message):
        read_realestate10k(text, "cam.txt")


def test_bad_preset_inputs_are_refused():
    with pytest.raises(CameraPathError, match="unknown camera preset"):
        preset("fly away", 16)
    with pytest.raises(CameraPathError, match="finite"):
        preset("zoom in", 16, float("nan"))


def test_preview_is_an_image_that_shows_the_path():
    picture = preview(preset("orbit left", 16))
    assert picture.shape == (1, 256, 512, 3) and 0 <= picture.min() and picture.max() <= 1
    still = preview(preset("zoom out", 16))
    assert not torch.equal(picture, still)
    coloured = (picture[0].max(-1).values - picture[0].min(-1).values) > 0.3
    assert coloured[:, :256].any() and coloured[:, 258:].any()  # both views draw the cameras
