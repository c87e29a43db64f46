"""The director's HTTP client against a fake OpenAI-compatible server: request format, retries, errors, no key leaks."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import pickle
import socket
import sys
import time
import traceback

import pytest
import torch
from PIL import Image

import support.director_fakes as H
from director import client, media, prompts
from director.errors import DirectorError

fake, secret = H.fake, H.secret  # the shared fixtures


def _conn(fake, env=None, **kw):
    options = {"timeout_s": 5.0, "max_retries": 3, "retry_delay_s": 0.01}
    options.update(kw)
    return client.DirectorConnection(base_url=fake.base_url, model="vision-test", key_env=env, **options)


def _error_text(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_request_format_image_as_png_data_url(fake, secret, caplog):
    env, key = secret
    image = torch.rand(1, 24, 40, 3)
    messages = prompts.describe_messages(media.png_data_url(image), hint="waves roll in", style="film grain")
    fake.answer("  The sea rolls gently toward the shore, slow zoom in.  ")
    answer = client.chat(_conn(fake, env), messages, temperature=0.0, seed=7)
    assert answer == "The sea rolls gently toward the shore, slow zoom in."
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {key}"
    body = request.body
    assert body["model"] == "vision-test" and body["temperature"] == 0.0 and body["seed"] == 7
    system, user = body["messages"]
    assert system["role"] == "system" and "DynamiCrafter" in system["content"]
    assert user["role"] == "user"
    text_part, image_part = user["content"]
    assert text_part["type"] == "text" and "waves roll in" in text_part["text"] and "film grain" in text_part["text"]
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert picture.format == "PNG" and picture.size == (40, 24) and picture.mode == "RGB"
    # the logs really were captured at DEBUG from the HTTP stack, so the leak check of the fixture means something
    names = {record.name.split(".")[0] for record in caplog.records}
    assert "openai" in names and ({"httpx", "httpx2"} & names)


def test_429_and_503_then_success_with_exponential_backoff(fake, secret):
    env, _ = secret
    fake.fail(429, "rate limited")
    fake.fail(503, "overloaded")
    fake.answer("ok")
    delays: list[float] = []
    assert client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}], sleep=delays.append) == "ok"
    assert len(fake.requests) == 3
    assert delays == pytest.approx([0.01, 0.02])


def test_retry_after_header_is_honoured(fake, secret):
    env, _ = secret
    fake.fail(429, "later", headers={"Retry-After": "0.05"})
    fake.answer("ok")
    delays: list[float] = []
    client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}], sleep=delays.append)
    assert delays == pytest.approx([0.05])


def test_429_until_retries_run_out_names_url_and_status(fake, secret):
    env, _ = secret
    for _ in range(3):
        fake.fail(429, "quota exceeded")
    with pytest.raises(DirectorError) as info:
        client.chat(_conn(fake, env, max_retries=1), [{"role": "user", "content": "hi"}], sleep=lambda s: None)
    message = str(info.value)
    assert fake.base_url + "/chat/completions" in message and "HTTP 429" in message and "2 tries" in message
    assert len(fake.requests) == 2


def test_401_names_the_variable_url_and_status_and_hides_the_key(fake, secret):
    env, key = secret
    fake.fail(401, f"Incorrect API key provided: {key}")  # servers sometimes echo the key
    with pytest.raises(DirectorError) as info:
        client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}])
    message = str(info.value)
    assert message.startswith(f"the key in ${env} was rejected by {fake.base_url}/chat/completions: HTTP 401")
    assert key not in _error_text(info.value)
    assert len(fake.requests) == 1  # never retried


def test_401_without_a_key_says_a_key_is_needed(fake):
    fake.fail(401, "missing key")
    with pytest.raises(DirectorError, match=r"refused the request without a key: HTTP 401"):
        client.chat(_conn(fake), [{"role": "user", "content": "hi"}])


def test_timeout_gives_up_quickly_with_a_clear_error(fake, secret):
    env, _ = secret
    fake.replies.append(H.Reply(body=H.chat_body("late"), delay=3.0))
    started = time.monotonic()
    with pytest.raises(DirectorError) as info:
        client.chat(_conn(fake, env, timeout_s=0.3, max_retries=0), [{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 2.5
    assert str(info.value).startswith(f"no answer from {fake.base_url}/chat/completions within 0.3 s")


def test_unreachable_server_is_retried_then_reported(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(H.HOSTS_ENV, f"127.0.0.1:{port}")
    conn = client.DirectorConnection(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, retry_delay_s=0.0
    )
    delays: list[float] = []
    with pytest.raises(
        DirectorError,
        match=rf"cannot reach http://127.0.0.1:{port}/v1/chat/completions \(tried 2 times, ConnectError\)",
    ):
        client.chat(conn, [{"role": "user", "content": "hi"}], sleep=delays.append)
    assert delays == [0.0]


def test_missing_key_variable_fails_before_any_request(fake, monkeypatch):
    monkeypatch.delenv("DIRECTOR_TEST_UNSET_KEY", raising=False)
    monkeypatch.setenv(H.KEYS_ENV, "DIRECTOR_TEST_UNSET_KEY")  # allowed by the admin, but not set
    with pytest.raises(DirectorError, match=r"\$DIRECTOR_TEST_UNSET_KEY is not set"):
        client.chat(_conn(fake, "DIRECTOR_TEST_UNSET_KEY"), [{"role": "user", "content": "hi"}])
    assert fake.requests == []


def test_local_server_never_receives_the_environment_openai_key(fake, monkeypatch, secret):
    _, key = secret
    monkeypatch.setenv("OPENAI_API_KEY", key)  # the openai client would pick this up on its own
    client.chat(_conn(fake), [{"role": "user", "content": "hi"}])
    assert key not in json.dumps(fake.requests[0].headers)


def test_seed_refused_with_400_is_retried_without_seed(fake, secret):
    env, _ = secret
    fake.fail(400, "Unknown parameter: 'seed'")
    fake.answer("ok")
    assert client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}], seed=3) == "ok"
    assert "seed" in fake.requests[0].body and "seed" not in fake.requests[1].body


@pytest.mark.parametrize("status", [400, 404, 500])
def test_error_bodies_are_not_echoed(fake, secret, status):
    env, _ = secret
    for _ in range(4):
        fake.fail(status, "internal: db password hunter2")
    with pytest.raises(DirectorError) as info:
        client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}], sleep=lambda s: None)
    assert f"HTTP {status}" in str(info.value) and "hunter2" not in _error_text(info.value)


def test_answer_that_is_not_an_api_response_is_not_echoed(fake, secret):
    env, _ = secret
    fake.replies.append(H.Reply(body="<html>welcome to my router, admin password hunter2</html>"))
    with pytest.raises(DirectorError, match=r"did not answer like a chat-completions API \(the answer is not JSON"):
        client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}])
    assert fake.requests  # it was asked
    with pytest.raises(DirectorError) as info:
        fake.replies.append(H.Reply(body="<html>hunter2</html>"))
        client.chat(_conn(fake, env), [{"role": "user", "content": "hi"}])
    assert "hunter2" not in _error_text(info.value)


def test_missing_openai_package_says_how_to_install(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(DirectorError, match=r"pip install openai"):
        client.chat(_conn(fake), [{"role": "user", "content": "hi"}])


def test_presets_and_overrides(monkeypatch):
    monkeypatch.setenv(H.HOSTS_ENV, "127.0.0.1:9000")
    monkeypatch.setenv(H.KEYS_ENV, "MY_KEY")
    gemini = client.make_connection("Gemini (OpenAI-compatible)")
    assert (
        gemini.key_env == "GEMINI_API_KEY" and gemini.model and "generativelanguage.googleapis.com" in gemini.base_url
    )
    assert client.make_connection("GitHub Models").key_env == "GITHUB_TOKEN"
    assert client.make_connection("OpenAI", model="gpt-x").model == "gpt-x"
    assert client.make_connection("OpenAI").key_env == "OPENAI_API_KEY"
    assert client.make_connection("Ollama (local)").key_env is None
    assert client.make_connection("LM Studio (local)").key_env is None
    custom = client.make_connection("Custom", model="m", key_env="$MY_KEY", custom_url="http://127.0.0.1:9000/v1")
    assert (custom.base_url, custom.key_env) == ("http://127.0.0.1:9000/v1", "MY_KEY")
    assert client.make_connection("OpenAI", key_env="-").key_env is None
    with pytest.raises(DirectorError, match="needs a base URL"):
        client.make_connection("Custom", model="m")
    with pytest.raises(DirectorError, match="http:// or https://"):
        client.make_connection("Custom", model="m", custom_url="ftp://x")


@pytest.mark.parametrize(
    "pasted",
    [
        "sk-proj-" + "a1B2" * 10,
        "ghp_" + "Ab1" * 12,
        "AIzaSyD" + "x9Y" * 10,
        "hf_" + "aBc1dEf2" * 4 + "xy",
        "gsk_" + "Q1w2E3r4" * 6,
        "abcDEF123ghiJKL456mnoPQR789",
        "my key with spaces",
    ],
)
def test_key_pasted_into_the_variable_field_is_refused_without_echo(pasted):
    with pytest.raises(DirectorError) as info:
        client.make_connection("OpenAI", key_env=pasted)
    assert "NAME of an environment variable" in str(info.value)
    assert pasted not in _error_text(info.value)


@pytest.mark.parametrize("name", ["HF_TOKEN", "SK_SERVICE_KEY", "GSK_TEAM_KEY", "hf_token", "GITHUB_TOKEN", "AIZA"])
def test_key_variable_names_are_judged_as_names(name):
    assert client.check_env_name(name) == name


def test_connection_value_holds_no_key(secret, monkeypatch):
    monkeypatch.setenv(H.HOSTS_ENV, "127.0.0.1:1")
    env, key = secret
    conn = client.make_connection("Custom", model="m", key_env=env, custom_url="http://127.0.0.1:1/v1")
    dumped = json.dumps(dataclasses.asdict(conn)) + repr(conn) + conn.describe()
    assert env in dumped and key not in dumped
    assert key.encode() not in pickle.dumps(conn)
