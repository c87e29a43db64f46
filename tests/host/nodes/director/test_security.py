"""Hostile workflows against the director nodes in the real pinned ComfyUI, in-process: each case must end in
the node's own clear error (or a prompt interrupted at once), the next prompt must still run, no form of a
secret may show in history, websocket events, the log or what a listener on 127.0.0.1 received, and no folder
outside the allowed ones is read. ``test_director_security_server.py`` does the same through /prompt."""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import support.director_fakes as H
from support.director_security_parts import (
    DESCRIBE,
    assert_hidden,
    describe_prompt,
    music,
    printable,
    private_folder,
    recorded,
    route,
    soundtrack_prompt,
)

pytestmark = pytest.mark.host


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
    music(Path(host.folder_paths.get_input_directory()) / "music")
    with H.FakeOpenAI() as fake, H.FakeOpenAI() as stranger:
        fake.allow(monkeypatch)
        fake.responder = route
        stranger.responder = route
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
    return {"messages": printable(run.messages), "ui": printable(run.ui), "outputs": printable(run.outputs)}


def _next_prompt_runs(host, world: dict[str, Any]) -> None:
    run = host.run_prompt(describe_prompt(world["fake"].base_url, world["env"]), outputs=["4"])
    assert run.output("3") == DESCRIBE


@pytest.mark.parametrize("target", ["allowed host", "unlisted host"])
def test_a_workflow_cannot_send_a_server_variable_anywhere(host, world, target):
    url = (world["fake"] if target == "allowed host" else world["stranger"]).base_url
    seen = _fails_clearly(
        host,
        describe_prompt(url, world["private_env"]),
        "1",
        "does not allow the key variable named in this Director Connection",
        "DYNAMICRAFTER_DIRECTOR_KEYS",
    )
    assert world["fake"].requests == [] and world["stranger"].requests == []
    _next_prompt_runs(host, world)
    assert_hidden(world["private"], *seen.values(), world["caplog"].text, recorded(world["fake"], world["stranger"]))


def test_the_allowed_key_goes_to_no_unlisted_host(host, world):
    seen = _fails_clearly(
        host,
        describe_prompt(world["stranger"].base_url, world["env"]),
        "1",
        f"does not allow the Custom provider to ask http://{world['stranger'].host}",
    )
    assert world["stranger"].requests == []
    _next_prompt_runs(host, world)
    assert_hidden(world["key"], *seen.values(), world["caplog"].text, recorded(world["stranger"]))


@pytest.mark.parametrize("shape", ["newline", "non-ascii"])
def test_a_key_that_is_no_header_value_leaks_in_no_form(host, world, monkeypatch, shape):
    bad = world["key"] + ("\nX-Injected: 1" if shape == "newline" else "\u00e9\u20ac")
    monkeypatch.setenv(world["env"], bad)
    seen = _fails_clearly(
        host,
        describe_prompt(world["fake"].base_url, world["env"]),
        "3",
        f"the value of ${world['env']} cannot be sent as a key",
    )
    assert world["fake"].requests == []
    monkeypatch.setenv(world["env"], world["key"])
    _next_prompt_runs(host, world)
    assert_hidden(bad, *seen.values(), world["caplog"].text)


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
        host, describe_prompt(world["fake"].base_url, world["env"]), "3", world["fake"].base_url + "/chat/completions"
    )
    _next_prompt_runs(host, world)
    for text in (*seen.values(), world["caplog"].text):
        assert marker not in text


@pytest.mark.parametrize("folder", ["absolute", "dotdot", "symlink"])
def test_soundtrack_reads_no_folder_outside_the_allowed_ones(host, world, folder):
    private = private_folder(world["tmp"], world["private"])
    input_dir = Path(host.folder_paths.get_input_directory())
    link = input_dir / f"link-{secrets.token_hex(4)}"
    link.symlink_to(private, target_is_directory=True)
    value = {"absolute": str(private), "dotdot": os.path.relpath(private, input_dir), "symlink": link.name}[folder]
    try:
        seen = _fails_clearly(
            host,
            soundtrack_prompt(world["fake"].base_url, world["env"], value),
            "3",
            "the music folder must be inside ComfyUI's input folder",
            "DYNAMICRAFTER_AUDIO_DIRS",
        )
    finally:
        link.unlink()
    assert world["fake"].requests == []  # no names or tags of that folder went to the model
    assert_hidden(world["private"], *seen.values(), world["caplog"].text)
    run = host.run_prompt(soundtrack_prompt(world["fake"].base_url, world["env"], "music"), outputs=["4"])
    assert run.output("3", 1) == "calm_sea.wav"
    assert run.output("3", 0)["waveform"].shape == (1, 1, 1000)  # one frame at 8 fps
    assert "PRIVATE" not in recorded(world["fake"])


def test_admin_folder_is_readable(host, world, monkeypatch):
    private = private_folder(world["tmp"], "admin-listed")
    monkeypatch.setenv(H.AUDIO_DIRS_ENV, str(private.parent))
    run = host.run_prompt(soundtrack_prompt(world["fake"].base_url, world["env"], str(private)), outputs=["4"])
    assert run.output("3", 1) == "calm_sea.wav"
    assert "PRIVATE admin-listed" in recorded(world["fake"])


def test_soundtrack_length_is_capped_whatever_frames_and_fps_say(host, world):
    seen = _fails_clearly(
        host,
        soundtrack_prompt(world["fake"].base_url, world["env"], "music", 4096, 0.1),
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
            describe_prompt(world["fake"].base_url, world["env"]), outputs=["4"], check=False
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
