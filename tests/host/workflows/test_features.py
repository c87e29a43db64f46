"""The keyframe-chain, long-video, ToonCrafter and AI-director workflows (in-process), and runs of the ControlNet
and LoRA workflows (their generic checks are in ``test_workflows.py``).

The generic checks of ``test_workflows.py`` (validation against the real node definitions, the frontend's
widget layout, UI and API agreement, a note line for every widget), extended to widgets fed by a link (the
director's prompts), then every new API workflow run end to end on tiny checkpoints at 128x64, 1 step:
frame counts, and for the director workflows a fake OpenAI-compatible service on 127.0.0.1 (random key in a
random environment variable) and an MP4 whose soundtrack lasts as long as the video. The ControlNet workflow
runs on a checkpoint with SD 2.1's widths (what SD 2.x ControlNets fit), the LoRA one on the tiny 512 file;
each changes the sampled video against strength 0.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest

import support.director_fakes as H
from support import workflow_checks
from support.audio_files import write_tone
from support.comfy_server import WORKFLOW_INPUTS, WORKFLOWS, load_api_workflow, workflow_names
from support.host_checkpoints import host_state_dict
from support.new_workflow_host import NEW, provision, tiny
from support.reference_data import manifest_path
from support.stock_model_files import write_sd21_layout_checkpoint, write_workflow_model_files
from support.workflow_checks import (
    FRONTEND_ONLY,
    assert_note_explains_every_widget,
    check_value,
    frontend_layout,
    load_generator,
    load_ui,
    node_info,
)
from support.workflow_runs import (
    FPS,
    HEIGHT,
    WIDTH,
    of_type,
    run_timed,
    sampled_with_strength,
    saved_video,
    video_facts,
)

HERE = Path(__file__).resolve().parent


STORY = [
    '```json\n{"style": "warm oil painting", "scenes": ["The sun sinks toward the sea.", '
    '"The sun touches the horizon."]}\n```'
]
DESCRIBE = "The sun sinks slowly into the sea while the waves shimmer, static camera."


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    """Tiny checkpoints for every file the new workflows load (one model folder for the module), the pictures."""
    return provision(comfy_host, tmp_path_factory)


# --------------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------------


def test_the_new_workflows_are_shipped_and_current(comfy_host):
    assert set(NEW) <= set(workflow_names())
    generator = load_generator()
    assert generator.stale_files() == []
    assert generator.main(["--check"]) == 0
    for name in NEW:
        assert (WORKFLOWS / f"{name}.jpg").is_file()
    pictures = {p.name for p in WORKFLOW_INPUTS.glob("*.png")}
    assert "dynamicrafter_middle.png" in pictures


def test_keyframes_are_one_size():
    from PIL import Image

    sizes = set()
    for name in ("dynamicrafter_start.png", "dynamicrafter_middle.png", "dynamicrafter_end.png"):
        with Image.open(WORKFLOW_INPUTS / name) as image:
            sizes.add(image.size)
    assert sizes == {(512, 320)}


def ui_to_api(host, ui: dict[str, Any]) -> dict[str, Any]:
    """workflow_checks.ui_to_api, where a widget fed by a link is the link (as the frontend exports it)."""
    prompt = workflow_checks.ui_to_api(host, ui)
    links = {row[0]: row for row in ui["links"]}
    for node in ui["nodes"]:
        for entry in node.get("inputs", []):
            if "widget" in entry and entry["link"] is not None:
                row = links[entry["link"]]
                prompt[str(node["id"])]["inputs"][entry["widget"]["name"]] = [str(row[1]), row[2]]
    return prompt


@pytest.mark.parametrize("name", NEW)
def test_api_workflow_validates(host, name):
    prompt = tiny(name)
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, prompt, None))
    assert valid, f"{name}: {error} {node_errors}"
    expected = ["SaveLoRA", "LossGraphNode", "SaveVideo"] if name == "train_lora_512" else ["SaveVideo"]
    assert sorted(n["class_type"] for k, n in prompt.items() if k in outputs) == sorted(expected)


def test_validation_catches_a_bad_value_in_a_new_node(host):
    prompt = tiny("keyframe_chain_512")
    of_type(prompt, "DynamiCrafterKeyframeChain")["frames"] = 1
    valid, _, _, node_errors = asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, prompt, None))
    assert not valid and "frames" in json.dumps(node_errors)


@pytest.mark.parametrize("name", NEW)
def test_ui_workflow_matches_the_node_definitions(host, name):
    ui = load_ui(name)
    links = {row[0]: row for row in ui["links"]}
    nodes = {node["id"]: node for node in ui["nodes"]}
    assert ui["last_link_id"] == max(links) and ui["last_node_id"] == max(nodes)
    problems: list[str] = []
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        layout = frontend_layout(node_info(host, node["type"]))
        where = f"{name} node {node['id']} ({node['type']})"
        values = node["widgets_values"]
        if not layout.accepts(len(values)):
            problems.append(f"{where}: {len(values)} widget values, expected {[w[0] for w in layout.widgets]}")
            continue
        for (widget, kind, options), value in zip(layout.widgets, values):
            if (node["type"], widget) == ("DynamiCrafterToonCrafterLoader", "ckpt_name"):  # the user's files
                problem = None if value == node["properties"]["models"][0]["name"] else f"{widget}: {value!r}"
            else:
                problem = check_value(node["type"], widget, kind, options, value)
            if problem:
                problems.append(f"{where}: {problem}")
        sockets = [(i["name"], i["type"], i.get("shape") == 7) for i in node["inputs"] if "widget" not in i]
        if sockets != layout.sockets:
            problems.append(f"{where}: inputs {sockets} != {layout.sockets}")
        widget_types = {w[0]: w[1] for w in layout.widgets}
        for entry in node["inputs"]:
            if "widget" in entry and (
                entry["widget"]["name"] != entry["name"] or widget_types.get(entry["name"]) != entry["type"]
            ):
                problems.append(f"{where}: widget input {entry} is not a {widget_types.get(entry['name'])} widget")
        stored_outputs = [(o["name"], o["type"]) for o in node["outputs"]]
        if stored_outputs != layout.outputs[: len(stored_outputs)]:  # a newer host may add outputs
            problems.append(f"{where}: outputs differ from {layout.outputs}")
        for slot, entry in enumerate(node["inputs"]):
            if entry["link"] is not None:
                row = links[entry["link"]]
                origin = nodes[row[1]]
                if (
                    row[3:5] != [node["id"], slot]
                    or origin["outputs"][row[2]]["type"] != entry["type"]
                    or entry["link"] not in (origin["outputs"][row[2]]["links"] or [])
                ):
                    problems.append(f"{where}: link {row} does not join {entry['name']} to its source")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NEW)
def test_ui_and_api_describe_the_same_graph(host, name):
    api = load_api_workflow(name)
    assert ui_to_api(host, load_ui(name)) == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()
    }


@pytest.mark.parametrize("name", NEW)
def test_note_explains_every_widget(host, name):
    assert_note_explains_every_widget(host, name)  # the same check, on the new files


def test_the_settings_are_the_models_own():
    chain = of_type(load_api_workflow("keyframe_chain_512"), "DynamiCrafterKeyframeChain")
    long = of_type(load_api_workflow("long_video_512"), "DynamiCrafterLongVideo")
    toon = load_api_workflow("tooncrafter_512")
    photo = load_api_workflow("photo_to_film")
    story = load_api_workflow("story_to_film")
    for sampling in (
        chain,
        long,
        of_type(toon, "DynamiCrafterSampler"),
        of_type(photo, "DynamiCrafterSampler"),
        of_type(story, "DynamiCrafterKeyframeChain"),
    ):
        assert (sampling["steps"], sampling["cfg"], sampling["eta"]) == (50, 7.5, 1.0)
    assert (chain["width"], chain["height"], chain["fs"], chain["frames"]) == (512, 320, 5, 16)
    assert len(chain["segment_prompts"].splitlines()) == 2
    assert (long["width"], long["height"], long["fs"], long["total_frames"], long["overlap"]) == (512, 320, 24, 40, 4)
    assert of_type(photo, "DynamiCrafterImageToVideo")["fs"] == 24
    assert of_type(toon, "DynamiCrafterInterpolation")["fs"] == 10  # ToonCrafter's own (config.TOONCRAFTER)
    assert of_type(toon, "DynamiCrafterToonCrafterLoader")["ckpt_name"] == "tooncrafter_512_interp.ckpt"
    assert of_type(story, "DynamiCrafterDirectorStoryboard")["scenes"] == 2
    for name in NEW:
        assert of_type(load_api_workflow(name), "CreateVideo")["fps"] == FPS
    for prompt in (photo, story):
        assert "audio" in of_type(prompt, "CreateVideo")


# --------------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------------


def test_keyframe_chain_runs(host):
    run = run_timed(host, tiny("keyframe_chain_512"))
    assert video_facts(saved_video(host, run)) == {"frames": 31, "size": (WIDTH, HEIGHT), "fps": FPS, "audio": None}


def test_long_video_runs(host):
    prompt = tiny("long_video_512")
    run = run_timed(host, prompt)
    frames = of_type(prompt, "DynamiCrafterLongVideo")["total_frames"]
    assert video_facts(saved_video(host, run))["frames"] == frames == 40


def test_tooncrafter_runs(host):
    run = run_timed(host, tiny("tooncrafter_512"))
    assert video_facts(saved_video(host, run)) == {"frames": 16, "size": (WIDTH, HEIGHT), "fps": FPS, "audio": None}


def _route(body: dict[str, Any]) -> H.Reply:
    system = body["messages"][0]["content"]
    for marker, answer in (
        ("You write motion prompts", DESCRIBE),
        ("film director", STORY[0]),
        ("background music", '{"index": 2, "reason": "a slow sunset"}'),
    ):
        if marker in system:
            return H.Reply(body=H.chat_body(answer))
    return H.Reply(status=500, body={"error": {"message": "unexpected request"}})


@pytest.fixture
def director(monkeypatch, tmp_path):
    """A fake AI service, a random key in a random variable, and a music folder."""
    env = "DIRECTOR_WORKFLOW_KEY_" + secrets.token_hex(4).upper()
    key = "sk-wf-" + secrets.token_urlsafe(24)
    monkeypatch.setenv(env, key)
    monkeypatch.setenv(H.KEYS_ENV, env)  # the admin allows the key, the fake's host and the music folder
    monkeypatch.setenv(H.AUDIO_DIRS_ENV, str(tmp_path))
    music = tmp_path / "music"
    music.mkdir()
    write_tone(music / "bright_march.wav", 2.0, 16000, 440.0, channels=1)
    write_tone(music / "slow_sunset.wav", 8.0, 16000, 220.0, channels=1)
    with H.FakeOpenAI() as fake:
        fake.allow(monkeypatch)
        fake.responder = _route
        yield fake, env, key, music


def directed(prompt: dict[str, Any], fake, env: str, music: Path) -> dict[str, Any]:
    of_type(prompt, "DynamiCrafterDirectorConnection").update(
        provider="Custom", model="vision-test", api_key_env=env, custom_url=fake.base_url, timeout=10.0, retries=0
    )
    of_type(prompt, "DynamiCrafterDirectorSoundtrack")["folder"] = str(music)
    return prompt


def check_film(host, run, fake, key: str, frames: int) -> dict[str, Any]:
    facts = video_facts(saved_video(host, run))
    assert facts["frames"] == frames and facts["size"] == (WIDTH, HEIGHT)
    assert facts["audio"] is not None, "no audio stream in the MP4"
    assert abs(facts["audio"] - frames / FPS) < 0.2, facts
    assert fake.requests and all(r.headers["authorization"] == f"Bearer {key}" for r in fake.requests)
    return facts


def test_photo_to_film_runs(host, director):
    fake, env, key, music = director
    prompt = directed(tiny("photo_to_film"), fake, env, music)
    run = run_timed(host, prompt)
    check_film(host, run, fake, key, 16)
    tasks = sorted(r.body["messages"][0]["content"].split(".")[0] for r in fake.requests)
    assert len(tasks) == 2  # describe + soundtrack
    describe = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterDirectorDescribeImage"]
    assert of_type(prompt, "DynamiCrafterDirectorSoundtrack")["description"] == [describe[0], 0]


def test_story_to_film_runs(host, director):
    fake, env, key, music = director
    prompt = directed(tiny("story_to_film"), fake, env, music)
    (board,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterDirectorStoryboard"]
    run = run_timed(host, prompt, outputs=[k for k, n in prompt.items() if n["class_type"] == "SaveVideo"] + [board])
    check_film(host, run, fake, key, 31)
    assert len(run.output(board).splitlines()) == 2
    assert of_type(prompt, "DynamiCrafterKeyframeChain")["segment_prompts"] == [board, 0]


# --------------------------------------------------------------------------------------------------
# ControlNet and LoRA
# --------------------------------------------------------------------------------------------------

SD21_LAYOUT = "dynamicrafter_512_sd21_layout_tiny.safetensors"


@pytest.fixture(scope="module")
def stock_models(host, tmp_path_factory):
    """The ControlNet and LoRA files the workflows name, and the SD 2.1-wide checkpoint the ControlNet fits."""
    folder = tmp_path_factory.mktemp("stock-models")
    write_sd21_layout_checkpoint(folder / SD21_LAYOUT)
    host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    unet = host_state_dict("512", manifest_path("512"), with_encoders=False)  # the tiny 512 file's UNet
    for folder_name in write_workflow_model_files(folder, unet):
        host.folder_paths.add_model_folder_path(folder_name, str(folder / folder_name))
    return host


def test_controlnet_workflow_runs(stock_models):
    prompt = tiny("controlnet_512")
    of_type(prompt, "DynamiCrafterCheckpointLoader")["ckpt_name"] = SD21_LAYOUT
    steered, plain = sampled_with_strength(stock_models, prompt, "ControlNetApplyAdvanced", "strength")
    assert steered.isfinite().all() and (steered - plain).abs().max() > 1e-4


def test_lora_workflow_runs(stock_models):
    with_lora, plain = sampled_with_strength(stock_models, tiny("lora_512"), "LoraLoaderModelOnly", "strength_model")
    assert with_lora.isfinite().all() and (with_lora - plain).abs().max() > 1e-4
