"""The AI director nodes inside the real ComfyUI (in-process, CPU) against a fake OpenAI-compatible server."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import av
import pytest
import torch
from PIL import Image

import support.director_fakes as H
from support.audio_files import write_tone

pytestmark = pytest.mark.host

UNIT = Path(__file__).resolve().parents[3] / "unit"

NODE_IDS = {
    "DynamiCrafterDirectorConnection",
    "DynamiCrafterDirectorDescribeImage",
    "DynamiCrafterDirectorStoryboard",
    "DynamiCrafterDirectorMotionAdvisor",
    "DynamiCrafterDirectorSoundtrack",
}

DESCRIBE_ANSWER = "A lighthouse stands on the cliff while waves crash below, slow zoom in."
STORY_ANSWER = (
    '```json\n{"style": "moody oil painting, teal and amber", "scenes": '
    '["A ship leaves the harbour at dawn.", "Storm clouds gather over the sea.", '
    '"The ship reaches a lighthouse."]}\n```'
)
ADVICE_ANSWER = (
    '{"steps": 60, "cfg": 22, "fs": 16, "prompt": "Waves crash harder against the cliff, static camera.", '
    '"explanation": "The motion is too weak."}'
)
TRACK_ANSWER = '{"index": 2, "reason": "stormy sea needs drums"}'


@pytest.fixture(scope="module")
def director_nodes(comfy_host) -> list[type]:
    module = comfy_host.import_pack_module("nodes.director")
    comfy_host.register(module.NODES)
    return module.NODES


@pytest.fixture
def secret(monkeypatch, caplog):
    """A random key in a random variable, and every log captured at DEBUG (the HTTP stack's too)."""
    return H.secret_key_in_env(monkeypatch, caplog, "host")


def _route(body: dict[str, Any]) -> Any:
    """Answer each director task by its instructions, whatever order ComfyUI runs the nodes in."""
    system = body["messages"][0]["content"]
    for marker, answer in (
        ("You write motion prompts", DESCRIBE_ANSWER),
        ("film director", STORY_ANSWER),
        ("You review clips", ADVICE_ANSWER),
        ("background music", TRACK_ANSWER),
    ):
        if marker in system:
            return H.Reply(body=H.chat_body(answer))
    return H.Reply(status=500, body={"error": {"message": "unexpected request"}})


@pytest.fixture(autouse=True)
def admin(monkeypatch, tmp_path):
    """The server admin's settings for these tests: the test's temp folder may hold music."""
    monkeypatch.setenv(H.AUDIO_DIRS_ENV, str(tmp_path))


def _connection(fake, env: str, **over: Any) -> dict[str, Any]:
    inputs = {
        "provider": "Custom",
        "model": "vision-test",
        "api_key_env": env,
        "custom_url": fake.base_url,
        "timeout": 5.0,
        "retries": 2,
        "retry_delay": 0.01,
    }
    inputs.update(over)
    return {"class_type": "DynamiCrafterDirectorConnection", "inputs": inputs}


def _printable(value: Any) -> str:
    return json.dumps(value, default=lambda o: f"<tensor {tuple(o.shape)}>" if isinstance(o, torch.Tensor) else repr(o))


def _decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_nodes_register_with_ids_categories_and_tooltips(comfy_host, director_nodes):
    ids = {cls.GET_SCHEMA().node_id for cls in director_nodes}
    assert ids == NODE_IDS
    for cls in director_nodes:
        schema = cls.GET_SCHEMA()
        assert comfy_host.nodes.NODE_CLASS_MAPPINGS[schema.node_id] is cls
        assert schema.category == "DynamiCrafter/director"
        assert schema.display_name and "DynamiCrafter" not in schema.display_name
        info = cls.GET_NODE_INFO_V1()
        inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
        assert inputs
        for name, spec in inputs.items():
            assert spec[1].get("tooltip"), f"{schema.node_id}.{name} has no tooltip"
    storyboard = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterDirectorStoryboard"]
    assert storyboard.GET_NODE_INFO_V1()["output_is_list"] == [False, True, False]


def test_whole_director_graph_runs_in_comfyui(comfy_host, director_nodes, secret, caplog, tmp_path, monkeypatch):
    env, key = secret
    comfy_host.load_builtin_extras()  # CreateVideo / SaveVideo take the soundtrack
    music = tmp_path / "music"
    music.mkdir()
    write_tone(music / "calm_piano.wav", 1.0, 22050, 220.0, channels=1)
    write_tone(music / "storm_drums.flac", 3.0, 32000, 110.0)
    (music / "tags.txt").write_text("storm_drums.flac: dark, drums, tension\n")
    with H.FakeOpenAI() as fake:
        fake.allow(monkeypatch)
        fake.responder = _route
        prompt = {
            "1": _connection(fake, env),
            "2": {
                "class_type": "EmptyImage",
                "inputs": {"width": 64, "height": 48, "batch_size": 16, "color": 0x336699},
            },
            "3": {
                "class_type": "DynamiCrafterDirectorDescribeImage",
                "inputs": {
                    "director": ["1", 0],
                    "image": ["2", 0],
                    "hint": "stormy",
                    "style": "",
                    "temperature": 0.0,
                    "seed": 42,
                },
            },
            "4": {
                "class_type": "DynamiCrafterDirectorStoryboard",
                "inputs": {
                    "director": ["1", 0],
                    "story": "A ship sails into a storm and finds a lighthouse.",
                    "scenes": 3,
                    "style": "",
                    "style_image": ["2", 0],
                    "temperature": 0.0,
                    "seed": 1,
                },
            },
            "5": {
                "class_type": "DynamiCrafterDirectorMotionAdvisor",
                "inputs": {
                    "director": ["1", 0],
                    "frames": ["2", 0],
                    "steps": 50,
                    "cfg": 7.5,
                    "fs": 24,
                    "prompt": ["3", 0],
                    "goal": "more motion",
                    "frames_shown": 4,
                    "temperature": 0.0,
                    "seed": 0,
                },
            },
            "6": {
                "class_type": "DynamiCrafterDirectorSoundtrack",
                "inputs": {
                    "director": ["1", 0],
                    "description": ["3", 0],
                    "folder": str(music),
                    "seconds": 1.0,
                    "fps": 8.0,
                    "frames": ["2", 0],
                    "fade_out": 0.5,
                    "temperature": 0.0,
                    "seed": 0,
                },
            },
            "7": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 8.0, "audio": ["6", 0]}},
            "8": {
                "class_type": "SaveVideo",
                "inputs": {"video": ["7", 0], "filename_prefix": "director/test", "format": "mp4", "codec": "h264"},
            },
        }
        workflow = {
            "extra_pnginfo": {"workflow": {"nodes": [{"id": 1, "widgets_values": ["Custom", "vision-test", env]}]}}
        }
        run = comfy_host.run_prompt(prompt, outputs=["3", "4", "5", "8"], extra_data=workflow)
        requests = list(fake.requests)

    # outputs
    assert run.output("3") == DESCRIBE_ANSWER
    style = "moody oil painting, teal and amber"
    scenes = ["A ship leaves the harbour at dawn", "Storm clouds gather over the sea", "The ship reaches a lighthouse"]
    expected = [f"{s}. Style: {style}." for s in scenes]
    assert run.output("4", 0) == "\n".join(expected)
    assert run.output_list("4", 1) == expected
    assert run.output("4", 2) == style
    assert [run.output("5", i) for i in range(4)] == [
        60,
        15.0,
        16,
        "Waves crash harder against the cliff, static camera.",
    ]
    assert "cfg 22 was clamped to 15" in run.output("5", 4)
    sound = run.output("6", 0)
    assert sound["sample_rate"] == 32000 and sound["waveform"].shape == (1, 2, 2 * 32000)  # 16 frames at 8 fps
    assert sound["waveform"][0, :, -1].abs().max() < 1e-3  # faded out
    assert run.output("6", 1) == "storm_drums.flac" and run.output("6", 2) == "stormy sea needs drums"

    # requests: one per task, model + key + images as PNG data URLs
    assert len(requests) == 4
    for request in requests:
        assert request.path == "/v1/chat/completions" and request.body["model"] == "vision-test"
        assert request.headers["authorization"] == f"Bearer {key}"
        assert request.body["temperature"] == 0.0
    by_task = {r.body["messages"][0]["content"].split(".")[0]: r.body for r in requests}
    describe = next(b for t, b in by_task.items() if "motion prompts" in t)
    assert describe["seed"] == 42
    picture = _decode_data_url(describe["messages"][1]["content"][1]["image_url"]["url"])
    assert picture.size == (64, 48) and picture.getpixel((0, 0)) == (0x33, 0x66, 0x99)
    advice = next(b for t, b in by_task.items() if "review clips" in t)
    strip = _decode_data_url(advice["messages"][1]["content"][1]["image_url"]["url"])
    assert strip.size == (4 * 64 + 3 * 4, 48)

    # the video the host wrote carries the soundtrack
    (saved,) = run.ui["8"]["images"]
    video_path = Path(comfy_host.folder_paths.get_output_directory()) / saved["subfolder"] / saved["filename"]
    with av.open(str(video_path)) as container:
        assert container.streams.audio and container.streams.video
        metadata = json.dumps(dict(container.metadata))
    assert env in metadata  # the prompt was embedded in the file's metadata...

    # ...and the key is nowhere: prompt, workflow, file metadata, outputs, messages, logs
    for text in (
        json.dumps(prompt),
        json.dumps(workflow),
        metadata,
        video_path.read_bytes().decode("latin-1"),
        _printable(run.outputs),
        _printable(run.messages),
        _printable(run.ui),
        caplog.text,
    ):
        assert key not in text
    assert any(record.name.startswith("openai") for record in caplog.records)


@pytest.mark.parametrize("case", ["401", "malformed storyboard", "no valid track", "missing variable"])
def test_failures_stop_the_graph_with_a_clear_message_and_no_key(
    comfy_host, director_nodes, secret, caplog, tmp_path, monkeypatch, case
):
    env, key = secret
    with H.FakeOpenAI() as fake:
        fake.allow(monkeypatch)
        endpoint = f"{fake.base_url}/chat/completions"
        connection = _connection(fake, env)
        if case == "401":
            fake.fail(401, f"invalid key {key}")
            node = {
                "class_type": "DynamiCrafterDirectorDescribeImage",
                "inputs": {"director": ["1", 0], "image": ["2", 0], "temperature": 0.0, "seed": 0},
            }
            expected = f"the key in ${env} was rejected by {endpoint}: HTTP 401"
        elif case == "malformed storyboard":
            fake.answer('{"style": "noir", "scenes": ["a dark street",')
            node = {
                "class_type": "DynamiCrafterDirectorStoryboard",
                "inputs": {
                    "director": ["1", 0],
                    "story": "A detective walks home.",
                    "scenes": 2,
                    "temperature": 0.0,
                    "seed": 0,
                },
            }
            expected = """not the JSON that was asked for: '{"style": "noir", "scenes": ["a dark street",'"""
        elif case == "no valid track":
            fake.answer('{"index": 9}')
            write_tone(tmp_path / "a.wav", 0.2, 8000, 440.0, channels=1)
            node = {
                "class_type": "DynamiCrafterDirectorSoundtrack",
                "inputs": {
                    "director": ["1", 0],
                    "description": "rain",
                    "folder": str(tmp_path),
                    "seconds": 1.0,
                    "fps": 8.0,
                    "fade_out": 0.1,
                    "temperature": 0.0,
                    "seed": 0,
                },
            }
            expected = "names no track from the list (numbers 1 to 1): '{\"index\": 9}'"
        else:
            monkeypatch.setenv(H.KEYS_ENV, "DIRECTOR_HOST_UNSET_VARIABLE")
            connection = _connection(fake, "DIRECTOR_HOST_UNSET_VARIABLE")
            node = {
                "class_type": "DynamiCrafterDirectorDescribeImage",
                "inputs": {"director": ["1", 0], "image": ["2", 0], "temperature": 0.0, "seed": 0},
            }
            expected = f"environment variable $DIRECTOR_HOST_UNSET_VARIABLE is not set (or empty): set it to your key for {endpoint}"
        prompt = {
            "1": connection,
            "2": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
            "3": node,
        }
        run = comfy_host.run_prompt(prompt, outputs=["3"], check=False)
    assert not run.success
    error = run.error
    assert error is not None and error["node_id"] == "3"
    assert expected in error["exception_message"]
    assert error["exception_type"].endswith("DirectorError")
    for text in (json.dumps(prompt), _printable(run.messages), caplog.text):
        assert key not in text
