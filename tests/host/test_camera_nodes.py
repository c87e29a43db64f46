"""Camera path nodes in a real prompt: a file, a preset and their preview run; bad files are refused when queued."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from dynamicrafter.camera import preset
from dynamicrafter.camera.path import write_realestate10k

GOOD = "camera_test_orbit.txt"
BAD = {
    "camera_test_json.txt": ('{"frames": [1, 2, 3]}', "a RealEstate10K camera line has 19 numbers"),
    "camera_test_nan.txt": (
        "https://x\n0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n0 0.5 0.5 0.5 0.5 0 0 1 0 0 nan 0 1 0 0 0 0 1 0\n",
        "frame 1 is not finite",
    ),
    "camera_test_singular.txt": (
        "https://x\n0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 0 0 0 0 0 1 0\n",
        "rotation of frame 1 is singular",
    ),
}


@pytest.fixture(scope="module")
def camera_files(comfy_host):
    import folder_paths  # the host's, once the comfy_host fixture has put it on the path

    folder_path = Path(folder_paths.get_input_directory())
    folder_path.mkdir(parents=True, exist_ok=True)
    (folder_path / GOOD).write_text(write_realestate10k(preset("orbit left", 40)))
    for name, (text, _) in BAD.items():
        (folder_path / name).write_text(text)
    return folder_path


def _prompt(camera_file: str) -> dict:
    return {
        "1": {
            "class_type": "DynamiCrafterLoadCamera",
            "inputs": {"camera_file": camera_file, "frames": 16, "share": 1.0},
        },
        "2": {
            "class_type": "DynamiCrafterCameraPreset",
            "inputs": {"preset": "zoom in", "strength": 1.0, "frames": 16},
        },
        "3": {"class_type": "DynamiCrafterCombineCameras", "inputs": {"first": ["1", 0], "second": ["2", 0]}},
        "4": {"class_type": "DynamiCrafterCameraPreview", "inputs": {"camera": ["3", 0], "size": 128}},
    }


def test_file_preset_combine_and_preview_run(comfy_host, camera_files):
    run = comfy_host.run_prompt(_prompt(GOOD), outputs=["4"])
    (picture,) = run.outputs["4"][0]
    assert picture.shape == (1, 128, 256, 3)
    camera = run.outputs["3"][0][0]
    assert camera.frames == 16


@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_are_refused_when_queued(comfy_host, camera_files, name):
    ok, reasons, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, _prompt(name), "1", {}))
    assert not ok
    assert BAD[name][1] in str(reasons)
