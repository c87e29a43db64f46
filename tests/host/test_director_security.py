"""Hostile workflows against the director nodes in the real pinned ComfyUI: in-process, and through /prompt on a
real server. Each case must end in the node's own clear error (or a prompt interrupted at once), the next prompt
must still run, no form of a secret may show in history, websocket events, the server log, outputs or what a
listener on 127.0.0.1 received, and no file may be written outside the allowed folders."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

import support.director_fakes as H
from support.comfy_server import ComfyServer, ServerSetup
from support.modules import load_by_path

pytestmark = pytest.mark.host

redact = H.director("redact")
SOUND = load_by_path(
    "_director_security_soundtrack", Path(__file__).resolve().parents[1] / "unit" / "test_director_soundtrack.py"
)
DESCRIBE = "A lighthouse blinks while waves roll in, static camera."
TRACK = '{"index": 1, "reason": "calm"}'


def _route(body: dict[str, Any]) -> H.Reply:
    system = body["messages"][0]["content"]
    return H.Reply(body=H.chat_body(TRACK if "background music" in system else DESCRIBE))


def _fresh_seed() -> int:
    """A new seed for every prompt, so that ComfyUI's cache never skips the director node."""
    return secrets.randbelow(2**31 - 1)


def _connection(base_url: str, env: str) -> dict[str, Any]:
    return {
        "class_type": "DynamiCrafterDirectorConnection",
        "inputs": {
            "provider": "Custom",
            "model": "vision-test",
            "api_key_env": env,
            "custom_url": base_url,
            "timeout": 30.0,
            "retries": 10,
            "retry_delay": 0.01,
        },
    }


def _describe_prompt(base_url: str, env: str) -> dict[str, Any]:
    return {
        "1": _connection(base_url, env),
        "2": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "3": {
            "class_type": "DynamiCrafterDirectorDescribeImage",
            "inputs": {"director": ["1", 0], "image": ["2", 0], "temperature": 0.0, "seed": _fresh_seed()},
        },
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }


def _soundtrack_prompt(base_url: str, env: str, folder: str, frames: int = 1, fps: float = 8.0) -> dict[str, Any]:
    return {
        "1": _connection(base_url, env),
        "2": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": frames, "color": 0}},
        "3": {
            "class_type": "DynamiCrafterDirectorSoundtrack",
            "inputs": {
                "director": ["1", 0],
                "description": "calm sea",
                "folder": folder,
                "seconds": 1.0,
                "fps": fps,
                "frames": ["2", 0],
                "fade_out": 0.1,
                "temperature": 0.0,
                "seed": _fresh_seed(),
            },
        },
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
    }


def _printable(value: Any) -> str:
    return json.dumps(value, default=lambda o: f"<tensor {tuple(o.shape)}>" if isinstance(o, torch.Tensor) else repr(o))


def _assert_hidden(secret: str, *texts: str) -> None:
    for form in redact.key_forms(secret):
        for text in texts:
            assert form not in text, f"a form of the secret ({form[:6]}...) leaked"


def _recorded(*fakes: H.FakeOpenAI) -> str:
    return json.dumps([[r.path, r.headers, r.body] for fake in fakes for r in fake.requests])


def _music(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    SOUND.write_tone(folder / "calm_sea.wav", 0.5, 8000, 220.0, channels=1)
    return folder


def _private_folder(root: Path, token: str) -> Path:
    """A folder outside every allowed one, holding a track and tags the model must never see."""
    private = _music(root / "private")
    (private / "tags.json").write_text(json.dumps({"calm_sea.wav": f"PRIVATE {token}"}))
    return private


# --------------------------------------------------------------------------------------------------
# In-process: the comfy_host fixture
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host(comfy_host):
    module = comfy_host.import_pack_module("nodes.director")
    comfy_host.register(module.NODES)
    comfy_host.load_builtin_extras()  # PreviewAny
    return comfy_host


@pytest.fixture
def world(host, monkeypatch, caplog, tmp_path):
    """An allowed fake service with a random allowed key, an unlisted listener, and a server secret that is not
    allowed as a key; the input folder holds music."""
    env, key = H.secret_key_in_env(monkeypatch, caplog, "sec")
    private_env, private = "SERVER_PRIVATE_" + secrets.token_hex(4).upper(), "pw-" + secrets.token_urlsafe(24)
    monkeypatch.setenv(private_env, private)
    _music(Path(host.folder_paths.get_input_directory()) / "music")
    with H.FakeOpenAI() as fake, H.FakeOpenAI() as stranger:
        fake.allow(monkeypatch)
        fake.responder = _route
        stranger.responder = _route
        yield {
            "fake": fake,
            "stranger": stranger,
            "env": env,
            "key": key,
            "private_env": private_env,
            "private": private,
            "tmp": tmp_path,
            "caplog": caplog,
        }


def _fails_clearly(host, prompt: dict[str, Any], node_id: str, *fragments: str) -> dict[str, Any]:
    run = host.run_prompt(prompt, outputs=["4"], check=False)
    assert not run.success
    error = run.error
    assert error is not None and error["node_id"] == node_id, error
    assert error["exception_type"].endswith("DirectorError"), error
    for fragment in fragments:
        assert fragment in error["exception_message"], error["exception_message"]
    return {"messages": _printable(run.messages), "ui": _printable(run.ui), "outputs": _printable(run.outputs)}


def _next_prompt_runs(host, world: dict[str, Any]) -> None:
    run = host.run_prompt(_describe_prompt(world["fake"].base_url, world["env"]), outputs=["4"])
    assert run.output("3") == DESCRIBE


@pytest.mark.parametrize("target", ["allowed host", "unlisted host"])
def test_a_workflow_cannot_send_a_server_variable_anywhere(host, world, target):
    url = (world["fake"] if target == "allowed host" else world["stranger"]).base_url
    seen = _fails_clearly(
        host,
        _describe_prompt(url, world["private_env"]),
        "1",
        "does not allow the key variable named in this Director Connection",
        "DYNAMICRAFTER_DIRECTOR_KEYS",
    )
    assert world["fake"].requests == [] and world["stranger"].requests == []
    _next_prompt_runs(host, world)
    _assert_hidden(world["private"], *seen.values(), world["caplog"].text, _recorded(world["fake"], world["stranger"]))


def test_the_allowed_key_goes_to_no_unlisted_host(host, world):
    seen = _fails_clearly(
        host,
        _describe_prompt(world["stranger"].base_url, world["env"]),
        "1",
        f"does not allow the Custom provider to ask http://{world['stranger'].host}",
    )
    assert world["stranger"].requests == []
    _next_prompt_runs(host, world)
    _assert_hidden(world["key"], *seen.values(), world["caplog"].text, _recorded(world["stranger"]))


@pytest.mark.parametrize("shape", ["newline", "non-ascii"])
def test_a_key_that_is_no_header_value_leaks_in_no_form(host, world, monkeypatch, shape):
    bad = world["key"] + ("\nX-Injected: 1" if shape == "newline" else "\u00e9\u20ac")
    monkeypatch.setenv(world["env"], bad)
    seen = _fails_clearly(
        host,
        _describe_prompt(world["fake"].base_url, world["env"]),
        "3",
        f"the value of ${world['env']} cannot be sent as a key",
    )
    assert world["fake"].requests == []
    monkeypatch.setenv(world["env"], world["key"])
    _next_prompt_runs(host, world)
    _assert_hidden(bad, *seen.values(), world["caplog"].text)


@pytest.mark.parametrize("body", ["text", "error json"])
def test_answer_bodies_are_never_echoed(host, world, body):
    marker = "internal-" + secrets.token_hex(8)
    reply = (
        H.Reply(body=f"<html>router admin page {marker}</html>")
        if body == "text"
        else H.Reply(status=404, body={"error": {"message": f"db dump {marker}"}})
    )
    world["fake"].replies.append(reply)
    seen = _fails_clearly(
        host, _describe_prompt(world["fake"].base_url, world["env"]), "3", world["fake"].base_url + "/chat/completions"
    )
    _next_prompt_runs(host, world)
    for text in (*seen.values(), world["caplog"].text):
        assert marker not in text


@pytest.mark.parametrize("folder", ["absolute", "dotdot", "symlink"])
def test_soundtrack_reads_no_folder_outside_the_allowed_ones(host, world, folder):
    private = _private_folder(world["tmp"], world["private"])
    input_dir = Path(host.folder_paths.get_input_directory())
    link = input_dir / f"link-{secrets.token_hex(4)}"
    link.symlink_to(private, target_is_directory=True)
    value = {"absolute": str(private), "dotdot": os.path.relpath(private, input_dir), "symlink": link.name}[folder]
    try:
        seen = _fails_clearly(
            host,
            _soundtrack_prompt(world["fake"].base_url, world["env"], value),
            "3",
            "the music folder must be inside ComfyUI's input folder",
            "DYNAMICRAFTER_AUDIO_DIRS",
        )
    finally:
        link.unlink()
    assert world["fake"].requests == []  # no names or tags of that folder went to the model
    _assert_hidden(world["private"], *seen.values(), world["caplog"].text)
    run = host.run_prompt(_soundtrack_prompt(world["fake"].base_url, world["env"], "music"), outputs=["4"])
    assert run.output("3", 1) == "calm_sea.wav"
    assert run.output("3", 0)["waveform"].shape == (1, 1, 1000)  # one frame at 8 fps
    assert "PRIVATE" not in _recorded(world["fake"])


def test_admin_folder_is_readable(host, world, monkeypatch):
    private = _private_folder(world["tmp"], "admin-listed")
    monkeypatch.setenv(H.AUDIO_DIRS_ENV, str(private.parent))
    run = host.run_prompt(_soundtrack_prompt(world["fake"].base_url, world["env"], str(private)), outputs=["4"])
    assert run.output("3", 1) == "calm_sea.wav"
    assert "PRIVATE admin-listed" in _recorded(world["fake"])


def test_soundtrack_length_is_capped_whatever_frames_and_fps_say(host, world):
    seen = _fails_clearly(
        host,
        _soundtrack_prompt(world["fake"].base_url, world["env"], "music", 4096, 0.1),
        "3",
        "4096 frames at 0.1 fps",
        "at most 600 s of audio",
    )
    assert world["fake"].requests == []
    _next_prompt_runs(host, world)
    assert "waveform" not in seen["outputs"]


def test_cancel_stops_a_waiting_request_within_a_second(host, world):
    import comfy.model_management as mm

    world["fake"].replies.append(H.Reply(body=H.chat_body("too late"), delay=30.0))
    result: dict[str, Any] = {}

    def run() -> None:
        result["run"] = host.run_prompt(
            _describe_prompt(world["fake"].base_url, world["env"]), outputs=["4"], check=False
        )
        result["ended"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not world["fake"].requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert world["fake"].requests, "the request never reached the fake service"
        pressed = time.monotonic()
        mm.interrupt_current_processing(True)
        worker.join(timeout=10)
        assert not worker.is_alive(), "Cancel was not heard"
    finally:
        mm.interrupt_current_processing(False)
    assert result["ended"] - pressed < 3.0  # heard while waiting: the service would answer after 30 s
    events = [event for event, _ in result["run"].messages]
    assert "execution_interrupted" in events and "execution_error" not in events
    _next_prompt_runs(host, world)


# --------------------------------------------------------------------------------------------------
# Through /prompt on a real server
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(comfy_host, tmp_path_factory):
    """A real ComfyUI whose admin allows one fake service and one key; it also holds a secret it must not hand out
    and a key variable whose value holds a line break."""
    root = tmp_path_factory.mktemp("director-security-server")
    setup = ServerSetup.create(root)
    _music(setup.input_dir / "music")
    private = _private_folder(root, "server")
    names = {
        "key": "DIRECTOR_SERVED_KEY_" + secrets.token_hex(4).upper(),
        "bad": "DIRECTOR_SERVED_BAD_" + secrets.token_hex(4).upper(),
        "private": "SERVER_PRIVATE_" + secrets.token_hex(4).upper(),
    }
    values = {
        "key": "sk-served-" + secrets.token_urlsafe(24),
        "bad": "sk-bad-" + secrets.token_urlsafe(24) + "\nX: 1",
        "private": "pw-" + secrets.token_urlsafe(24),
    }
    with H.FakeOpenAI() as fake, H.FakeOpenAI() as stranger, pytest.MonkeyPatch.context() as env:
        fake.responder = _route
        stranger.responder = _route
        for kind, name in names.items():
            env.setenv(name, values[kind])
        env.setenv(H.KEYS_ENV, f"{names['key']},{names['bad']}")
        env.setenv(H.HOSTS_ENV, fake.host)
        env.delenv(H.AUDIO_DIRS_ENV, raising=False)
        server = ComfyServer(comfy_host.comfy_dir, setup, root / "server.log")
        server.start()
        try:
            server.wait_ready()
            before = {p for p in root.rglob("*") if p.is_file()}
            yield {
                "server": server,
                "fake": fake,
                "stranger": stranger,
                "names": names,
                "values": values,
                "private_dir": private,
                "root": root,
                "before": before,
            }
        finally:
            server.stop()


def _served_run(served: dict[str, Any], prompt: dict[str, Any], *fragments: str) -> str:
    """Run ``prompt``; it must fail in a director node with ``fragments``; returns what a client and admin see."""
    server: ComfyServer = served["server"]
    run = server.run(prompt, timeout=120)
    assert run.outcome == "execution_error", f"{run.outcome}\n{server.log_tail()}"
    error = run.error
    assert error["exception_type"].endswith("DirectorError"), error
    for fragment in fragments:
        assert fragment in error["exception_message"], error["exception_message"]
    history = server.history(run.prompt_id)
    return json.dumps(run.messages) + json.dumps(history)


def _server_texts(served: dict[str, Any]) -> list[str]:
    server: ComfyServer = served["server"]
    return [
        server.log_text(),
        json.dumps(server.get("/internal/logs").body),
        _recorded(served["fake"], served["stranger"]),
    ]


def _served_next_prompt_runs(served: dict[str, Any]) -> None:
    server: ComfyServer = served["server"]
    run = server.run(_describe_prompt(served["fake"].base_url, served["names"]["key"]), timeout=120)
    assert run.outcome == "execution_success", server.log_tail()
    assert DESCRIBE in json.dumps(server.history(run.prompt_id)["outputs"])


def test_server_refuses_exfiltration_and_leaks_nothing(served):
    names, values, fake, stranger = served["names"], served["values"], served["fake"], served["stranger"]
    seen = [
        _served_run(served, _describe_prompt(fake.base_url, names["private"]), "does not allow the key variable"),
        _served_run(
            served,
            _describe_prompt(stranger.base_url, names["key"]),
            f"does not allow the Custom provider to ask http://{stranger.host}",
        ),
        _served_run(served, _describe_prompt(fake.base_url, names["bad"]), f"${names['bad']} cannot be sent as a key"),
        _served_run(
            served,
            _soundtrack_prompt(fake.base_url, names["key"], str(served["private_dir"])),
            "the music folder must be inside ComfyUI's input folder",
        ),
        _served_run(
            served, _soundtrack_prompt(fake.base_url, names["key"], "music", 4096, 0.1), "at most 600 s of audio"
        ),
    ]
    assert fake.requests == [] and stranger.requests == []
    _served_next_prompt_runs(served)
    texts = seen + _server_texts(served)
    for kind in ("private", "bad"):
        _assert_hidden(values[kind], *texts)
    assert "PRIVATE server" not in "".join(texts)
    # the allowed key went only where it may, and is in no message or log
    assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {values['key']}"}
    _assert_hidden(values["key"], *seen, *_server_texts(served)[:2])


def test_server_cancel_is_honoured_within_a_second_and_the_queue_moves_on(served):
    server: ComfyServer = served["server"]
    fake = served["fake"]
    asked = len(fake.requests)
    fake.replies.append(H.Reply(body=H.chat_body("too late"), delay=60.0))
    result: dict[str, Any] = {}

    def run() -> None:
        result["run"] = server.run(_describe_prompt(fake.base_url, served["names"]["key"]), timeout=120)
        result["ended"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while len(fake.requests) == asked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake.requests) > asked, "the request never reached the fake service"
    pressed = time.monotonic()
    request = urllib.request.Request(
        server.url + "/interrupt", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert result["run"].outcome == "execution_interrupted", server.log_tail()
    assert result["ended"] - pressed < 4.0  # heard while waiting (the service would answer after 60 s); the
    # latency itself is measured by bench/director_cancel.py
    _served_next_prompt_runs(served)


def test_server_wrote_no_file_outside_its_own_folders(served):
    setup: ServerSetup = served["server"].setup
    allowed = (setup.output_dir, setup.base / "temp", setup.base / "user", served["root"] / "server.log")
    new = {p for p in served["root"].rglob("*") if p.is_file()} - served["before"]
    strays = [p for p in new if not any(p == a or p.is_relative_to(a) for a in allowed)]
    assert not strays, strays
