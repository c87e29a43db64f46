"""A fake OpenAI-compatible chat server on 127.0.0.1 for the director's tests."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+; only for the annotation

ROOT = Path(__file__).resolve().parents[2]  # the repository
KEYS_ENV, HOSTS_ENV, AUDIO_DIRS_ENV = (
    "DYNAMICRAFTER_DIRECTOR_KEYS",
    "DYNAMICRAFTER_DIRECTOR_HOSTS",
    "DYNAMICRAFTER_AUDIO_DIRS",
)
"""The admin's settings (director/policy.py); spelled out here so a renamed setting fails the tests."""


def chat_body(content: str, model: str = "fake-model") -> dict[str, Any]:
    """A minimal chat-completions response."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, str -> raw text
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeOpenAI:
    """Records every request; answers with the queued replies in order, then from ``responder(body)`` when set,
    else with ``default_answer``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        self.responder: Callable[[Any], Reply] | None = None
        self.default_answer = "A cat turns its head slowly, static camera."
        self._stop = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with fake._lock:
                    fake.requests.append(
                        Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    if fake.replies:
                        reply = fake.replies.pop(0)
                    elif fake.responder is not None:
                        reply = fake.responder(body)
                    else:
                        reply = Reply(body=chat_body(fake.default_answer))
                if reply.delay:
                    fake._stop.wait(reply.delay)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = payload.encode()
                try:
                    self.send_response(reply.status)
                    content_type = "text/plain" if isinstance(reply.body, str) else "application/json"
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        """``127.0.0.1:port``, as an admin lists it in DYNAMICRAFTER_DIRECTOR_HOSTS."""
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}/v1"

    def allow(self, monkeypatch) -> None:
        """Be the admin: allow the Custom provider to ask this fake (the key variable: ``secret_key_in_env``)."""
        monkeypatch.setenv(HOSTS_ENV, self.host)

    def answer(self, content: str, **kw: Any) -> None:
        self.replies.append(Reply(body=chat_body(content), **kw))

    def fail(self, status: int, message: str = "error", **kw: Any) -> None:
        self.replies.append(Reply(status=status, body={"error": {"message": message, "code": status}}, **kw))

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


# ---- checks of the fake itself -----------------------------------------------------------------------------------


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


HTTP_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2")
"""Loggers of the HTTP stack, captured at DEBUG so a leaked key would show in them."""


@pytest.fixture
def fake(monkeypatch) -> Iterator[FakeOpenAI]:
    """A fake service the admin allows the Custom provider to ask."""
    with FakeOpenAI() as server:
        server.allow(monkeypatch)
        yield server


@pytest.fixture
def secret(monkeypatch, caplog) -> Iterator[tuple[str, str]]:
    """A random allowed key in a random variable; after the test it must be nowhere in the captured logs."""
    env, value = secret_key_in_env(monkeypatch, caplog, "test")
    yield env, value
    assert value not in caplog.text


def secret_key_in_env(monkeypatch, caplog, tag: str) -> tuple[str, str]:
    """A random key in a randomly named environment variable the admin allows, with every log captured at DEBUG."""
    import logging
    import secrets

    caplog.set_level(logging.DEBUG)
    for name in HTTP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    env = f"DIRECTOR_{tag.upper()}_KEY_" + secrets.token_hex(4).upper()
    value = f"sk-{tag}-" + secrets.token_urlsafe(24)
    monkeypatch.setenv(env, value)
    monkeypatch.setenv(KEYS_ENV, env)
    return env, value
