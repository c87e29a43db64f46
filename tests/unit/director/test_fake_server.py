"""Checks of the fake OpenAI-compatible server the director tests use (tests/support/director_fakes.py)."""

from __future__ import annotations

import subprocess
import sys

from support.director_fakes import FakeOpenAI, _post


def test_fake_server_records_and_replies_in_order() -> None:
    with FakeOpenAI() as fake:
        fake.fail(429, "slow down")
        fake.answer("hello")
        url = fake.base_url + "/chat/completions"
        assert _post(url, {"n": 1})[0] == 429
        status, body = _post(url, {"n": 2})
        assert status == 200 and body["choices"][0]["message"]["content"] == "hello"
        status, body = _post(url, {"n": 3})
        assert body["choices"][0]["message"]["content"] == fake.default_answer
        assert [r.body["n"] for r in fake.requests] == [1, 2, 3]
        assert fake.requests[0].path == "/v1/chat/completions"


def test_pure_modules_import_without_comfyui_or_openai() -> None:
    """The logic modules need neither ComfyUI nor openai at import time (openai is optional, loaded lazily)."""
    code = (
        "import importlib, sys; "
        "[importlib.import_module('director.' + m) for m in ('client', 'media', 'prompts', 'answers', 'storyboard', "
        "'advisor', 'soundtrack', 'audio', 'policy', 'redact', 'waiting')]; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'openai', 'folder_paths')); "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
