"""The director nodes get the pack's queue-time and run-time checks (``DirectorNode``, a ``CheckedNode``): NaN and
infinite numbers and texts longer than a prompt are refused when queued and again when run, naming the input,
and no request reaches the service; the administrator can raise the text bound."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import pytest
import torch

import support.director_fakes as H
from support.director_security_parts import describe_prompt, route, soundtrack_prompt

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def host(comfy_host):
    module = comfy_host.import_pack_module("nodes.director")
    comfy_host.register(module.NODES)
    comfy_host.load_builtin_extras()  # PreviewAny
    return comfy_host


@pytest.fixture
def service(host, monkeypatch, caplog):
    env, _ = H.secret_key_in_env(monkeypatch, caplog, "inputs")
    with H.FakeOpenAI() as fake:
        fake.allow(monkeypatch)
        fake.responder = route
        yield fake, env


def _problems(host: Any, prompt: dict[str, Any]) -> str | None:
    """The queue-time errors of ``prompt`` as text, or None when it validates."""
    valid = asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, prompt, None))
    return None if valid[0] else json.dumps(valid[3])


@pytest.mark.parametrize(
    ("node", "name", "value"),
    [
        ("3", "fade_out", math.nan),
        ("3", "seconds", math.inf),
        ("3", "fps", math.nan),
        ("3", "temperature", -math.inf),
        ("1", "timeout", math.nan),
        ("1", "retry_delay", math.inf),
    ],
)
def test_nan_and_infinite_numbers_are_refused_when_queued(host, service, node, name, value):
    fake, env = service
    prompt = soundtrack_prompt(fake.base_url, env, "music")
    assert name in prompt[node]["inputs"], name
    prompt[node]["inputs"][name] = value
    problems = _problems(host, prompt)
    assert problems is not None and f"{name} is {value}, not a number" in problems, problems
    assert not fake.requests


def test_texts_are_bounded_for_a_prompt_and_the_admin_can_raise_the_bound(host, service, monkeypatch):
    fake, env = service
    prompt = describe_prompt(fake.base_url, env)
    prompt["3"]["inputs"]["hint"] = "waves " * 200_000  # 1.2 MB: a book, refused by every node of the pack
    problems = _problems(host, prompt)
    assert problems is not None and "hint holds 1200000 characters" in problems, problems
    prompt["3"]["inputs"]["hint"] = "waves " * 5_000  # 30 000 characters: more than a director prompt
    problems = _problems(host, prompt)
    assert problems is not None and "a director node sends at most 20000" in problems, problems
    assert "DYNAMICRAFTER_DIRECTOR_MAX_TEXT" in problems
    prompt["3"]["inputs"]["hint"] = "waves " * 3_000  # 18 000 characters: a long prompt still passes
    assert _problems(host, prompt) is None
    monkeypatch.setenv("DYNAMICRAFTER_DIRECTOR_MAX_TEXT", "50000")
    prompt["3"]["inputs"]["hint"] = "waves " * 5_000
    assert _problems(host, prompt) is None, "the administrator raised the bound"
    assert not fake.requests


def test_values_wired_or_given_at_run_time_are_checked_before_any_request(host, service, monkeypatch):
    fake, env = service
    director = host.import_pack_module("nodes.director")
    validation = host.import_pack_module("nodes.adapter.validation")
    conn = director.comfy_nodes.DirectorConnectionNode.execute(
        provider="Custom", model="m", api_key_env=env, custom_url=fake.base_url, timeout=5.0, retries=0, retry_delay=0.1
    ).result[0]
    image = torch.zeros(1, 16, 16, 3)
    describe = director.comfy_nodes.DirectorDescribeImage
    with pytest.raises(validation.InputError, match="temperature is nan"):
        describe.execute(director=conn, image=image, temperature=math.nan, seed=0)
    with pytest.raises(validation.InputError, match="style holds 30000 characters"):
        describe.execute(director=conn, image=image, temperature=0.0, seed=0, style="x" * 30_000)
    assert not fake.requests, "no request is sent with an invalid value"
    assert describe.execute(director=conn, image=image, temperature=0.0, seed=0).result[0]
    assert len(fake.requests) == 1
