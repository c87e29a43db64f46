"""The director's client against hostile workflows: allowed key variables and hosts only, the key in no form in
any message, no response bodies echoed, Cancel heard during a request, one node's time bounded."""

from __future__ import annotations

import json
import threading
import time
import traceback
from urllib.parse import quote

import pytest

import support.director_fakes as H
from director import client, redact
from director.errors import DirectorError

fake, secret = H.fake, H.secret  # the shared fixtures

HI = [{"role": "user", "content": "hi"}]


def _error_text(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def _refused(call) -> str:
    with pytest.raises(DirectorError) as info:
        call()
    return str(info.value)


def test_unlisted_variable_is_refused_with_the_same_words_whether_it_exists_or_not(fake, monkeypatch, secret):
    _, key = secret
    monkeypatch.setenv("SERVER_DATABASE_PASSWORD", key)
    monkeypatch.delenv("SERVER_NO_SUCH_VARIABLE", raising=False)
    messages = {
        name: _refused(
            lambda name=name: client.make_connection("Custom", model="m", key_env=name, custom_url=fake.base_url)
        )
        for name in ("SERVER_DATABASE_PASSWORD", "SERVER_NO_SUCH_VARIABLE")
    }
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    assert "DYNAMICRAFTER_DIRECTOR_KEYS" in message and "SERVER_" not in message and key not in message
    # a hand-made connection is checked again before any request
    conn = client.DirectorConnection(base_url=fake.base_url, model="m", key_env="SERVER_DATABASE_PASSWORD")
    assert _refused(lambda: client.chat(conn, HI)) == message
    assert fake.requests == []


def test_a_preset_takes_only_its_own_variable(monkeypatch):
    monkeypatch.delenv(H.KEYS_ENV, raising=False)
    assert client.make_connection("OpenAI", key_env="OPENAI_API_KEY").key_env == "OPENAI_API_KEY"
    message = _refused(lambda: client.make_connection("OpenAI", key_env="GEMINI_API_KEY"))
    assert "the preset's own OPENAI_API_KEY" in message and "GEMINI" not in message
    monkeypatch.setenv(H.KEYS_ENV, "TEAM_KEY, OTHER_KEY")
    assert client.make_connection("OpenAI", key_env="OTHER_KEY").key_env == "OTHER_KEY"
    with pytest.raises(DirectorError, match="only https://api.openai.com/v1"):
        client.chat(client.DirectorConnection(base_url="http://127.0.0.1:1/v1", model="m", provider="OpenAI"), HI)


@pytest.mark.parametrize(
    "listed, allowed",
    [
        ("", False),
        ("127.0.0.1", True),
        ("{host}", True),
        ("http://{host}", True),
        ("https://{host}", False),
        ("127.0.0.1:1", False),
        ("localhost", False),
        ("other.example, {host}", True),
    ],
)
def test_custom_host_must_be_listed_by_the_admin(fake, secret, monkeypatch, listed, allowed):
    env, key = secret
    monkeypatch.setenv(H.HOSTS_ENV, listed.format(host=fake.host))

    def make():
        return client.make_connection("Custom", model="m", key_env=env, custom_url=fake.base_url)

    if allowed:
        assert client.chat(make(), HI) and fake.requests[0].headers["authorization"] == f"Bearer {key}"
        return
    message = _refused(make)
    assert message.startswith(f"this server does not allow the Custom provider to ask http://{fake.host}")
    assert "DYNAMICRAFTER_DIRECTOR_HOSTS" in message
    conn = client.DirectorConnection(base_url=fake.base_url, model="m", key_env=env)
    assert _refused(lambda: client.chat(conn, HI)) == message
    assert fake.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:{port}/v1",
        "http://127.0.0.1:{port}/v1?x=1",
        "ftp://127.0.0.1:{port}/v1",
        "http://127.0.0.1:99999/v1",
        "http:///v1",
    ],
)
def test_odd_custom_urls_are_refused(fake, url):
    with pytest.raises(DirectorError, match="Custom base URL|does not allow"):
        client.make_connection("Custom", model="m", custom_url=url.format(port=fake.server.server_address[1]))


@pytest.mark.parametrize("shape", ["newline", "non-ascii", "space", "tab-inside"])
def test_key_that_is_no_header_value_is_refused_without_a_trace_of_it(fake, monkeypatch, secret, shape):
    env, key = secret
    bad = {
        "newline": key + "\nX-Evil: 1",
        "non-ascii": key + "é€",
        "space": key[:10] + " " + key[10:],
        "tab-inside": key[:10] + "\t" + key[10:],
    }[shape]
    monkeypatch.setenv(env, bad)
    with pytest.raises(DirectorError) as info:
        client.chat(client.DirectorConnection(base_url=fake.base_url, model="m", key_env=env), HI)
    text = _error_text(info.value)
    assert f"the value of ${env} cannot be sent as a key" in str(info.value)
    for form in redact.key_forms(bad) + [key]:
        assert form not in text
    assert fake.requests == []


def test_every_form_of_the_key_is_scrubbed():
    key = 'sk-Ab/c+d=é"\\x\nsecond-line-part'
    text = " | ".join(
        [
            key,
            repr(key),
            json.dumps(key),
            quote(key, safe=""),
            quote(key),
            key.encode().hex(),
            repr(key.encode()),
            key.splitlines()[1],
            quote(key, safe="").lower(),
        ]
    )
    scrubbed = redact.scrub(text, key)
    for form in (
        key,
        repr(key)[1:-1],
        json.dumps(key)[1:-1],
        quote(key, safe=""),
        "second-line-part",
        key.splitlines()[0],
        repr(key.encode())[2:-1],
        quote(key, safe="").lower(),
    ):
        assert form not in scrubbed, form
    assert redact.scrub("nothing here", key) == "nothing here" and redact.scrub("x", None) == "x"


def test_unexpected_client_exception_becomes_a_clear_error_without_the_key(fake, secret, monkeypatch):
    env, key = secret
    openai = pytest.importorskip("openai")

    def explode(self, **_):
        raise UnicodeEncodeError("ascii", f"Bearer {key}", 7, 8, f"cannot encode {key!r}")

    monkeypatch.setattr(openai.resources.chat.completions.Completions, "create", explode)
    with pytest.raises(DirectorError) as info:
        client.chat(client.DirectorConnection(base_url=fake.base_url, model="m", key_env=env), HI)
    assert "failed unexpectedly (UnicodeEncodeError)" in str(info.value)
    assert key not in _error_text(info.value) and info.value.__cause__ is None


def test_redirects_are_not_followed(fake, secret, monkeypatch):
    env, _ = secret
    with H.FakeOpenAI() as elsewhere:
        fake.replies.append(
            H.Reply(status=307, body="", headers={"Location": elsewhere.base_url + "/chat/completions"})
        )
        with pytest.raises(DirectorError, match=r"redirect \(HTTP 307\), which is not followed"):
            client.chat(client.DirectorConnection(base_url=fake.base_url, model="m", key_env=env), HI)
        assert elsewhere.requests == []


class _Cancel(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


@pytest.mark.parametrize("waiting", ["for the answer", "to retry"])
def test_cancel_is_heard_while_waiting(fake, secret, waiting):
    env, _ = secret
    if waiting == "for the answer":
        fake.replies.append(H.Reply(body=H.chat_body("late"), delay=20.0))
    else:
        fake.fail(503, "busy", headers={"Retry-After": "30"})
    pressed: list[float] = []
    waiting_after_request = threading.Event()

    def press_once_waiting() -> None:  # Cancel once the client checks for it after the request reached the service
        if waiting_after_request.wait(timeout=30.0):
            pressed.append(time.monotonic())

    def abort_check() -> None:
        if fake.requests:
            waiting_after_request.set()
        if pressed:
            raise _Cancel()

    threading.Thread(target=press_once_waiting, daemon=True).start()
    with pytest.raises(_Cancel):
        client.chat(
            client.DirectorConnection(base_url=fake.base_url, model="m", key_env=env, timeout_s=60.0, max_retries=10),
            HI,
            abort_check=abort_check,
        )
    assert time.monotonic() - pressed[0] < 3.0  # heard while waiting: the service holds on for 20 s or 30 s
    assert len(fake.requests) == 1


def test_one_node_ends_within_the_cap_whatever_timeout_and_retries_say(fake, secret, monkeypatch):
    env, _ = secret
    monkeypatch.setattr(client, "MAX_NODE_SECONDS", 1.5)
    fake.responder = lambda body: H.Reply(body=H.chat_body("late"), delay=5.0)
    started = time.monotonic()
    with pytest.raises(DirectorError, match=r"no answer from .* within"):
        client.chat(
            client.DirectorConnection(
                base_url=fake.base_url, model="m", key_env=env, timeout_s=1.0, max_retries=10, retry_delay_s=0.0
            ),
            HI,
        )
    assert time.monotonic() - started < 5.0  # 11 tries of 1 s each would take 11 s
    assert 1 <= len(fake.requests) <= 2


def test_a_server_that_trickles_its_answer_is_cut_at_the_timeout(secret, monkeypatch):
    """httpx's timeout is per read; the node's is for the whole answer."""
    import socket

    env, _ = secret
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    monkeypatch.setenv(H.HOSTS_ENV, f"127.0.0.1:{port}")
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        while not stop.wait(0.2):
            try:
                conn.sendall(b" ")
            except OSError:
                break
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(DirectorError, match="within 1 s"):
            client.chat(
                client.DirectorConnection(
                    base_url=f"http://127.0.0.1:{port}/v1", model="m", key_env=env, timeout_s=1.0, max_retries=0
                ),
                HI,
            )
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 5.0  # httpx alone would wait as long as bytes keep coming
