"""The FreeNoise long-video workflow (``long_video_freenoise_512``) end to end in the real host, on the tiny 512
checkpoint at 128x64, 1 step (its generic checks run with the other new workflows in ``test_new_workflows.py``)."""

from __future__ import annotations

import pytest

from support.comfy_server import load_api_workflow, workflow_names
from support.new_workflow_host import provision, tiny
from support.workflow_checks import NEW_NAMES, load_ui
from support.workflow_runs import FPS, HEIGHT, WIDTH, of_type, run_timed, saved_video, video_facts

NAME = "long_video_freenoise_512"


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    return provision(comfy_host, tmp_path_factory)


def test_the_workflow_patches_the_model_and_samples_in_one_pass():
    assert NAME in workflow_names() and NAME in NEW_NAMES
    prompt = load_api_workflow(NAME)
    long = of_type(prompt, "DynamiCrafterLongVideo")
    patch = of_type(prompt, "DynamiCrafterFreeNoise")
    (patch_id,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterFreeNoise"]
    assert long["mode"] == "FreeNoise one pass" and long["model"] == [patch_id, 0]
    assert (patch["window"], patch["stride"]) == (16, 4)  # the FreeNoise release's defaults
    assert (long["width"], long["height"], long["total_frames"]) == (512, 320, 64)
    assert (long["steps"], long["cfg"], long["eta"]) == (50, 7.5, 1.0)
    assert "FreeNoise or crossfaded clips" in str(load_ui(NAME))


def test_the_workflow_runs_and_saves_every_frame(host):
    run = run_timed(host, tiny(NAME))
    facts = video_facts(saved_video(host, run))
    assert facts == {"frames": 64, "size": (WIDTH, HEIGHT), "fps": FPS, "audio": None}
