"""The pieces the director security tests share (``tests/host/test_director_security*.py``): the fake AI
service's answers, prompts for the Describe and Soundtrack nodes that point at a given service and key
variable, a music folder, and the checks that no form of a secret shows."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import torch

import support.director_fakes as H
from director import redact
from support.audio_files import write_tone

DESCRIBE = "A lighthouse blinks while waves roll in, static camera."
TRACK = '{"index": 1, "reason": "calm"}'


def route(body: dict[str, Any]) -> H.Reply:
    system = body["messages"][0]["content"]
    return H.Reply(body=H.chat_body(TRACK if "background music" in system else DESCRIBE))


def fresh_seed() -> int:
    """A new seed for every prompt, so that ComfyUI's cache never skips the director node."""
    return secrets.randbelow(2**31 - 1)


def connection(base_url: str, env: str) -> dict[str, Any]:
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


def describe_prompt(base_url: str, env: str) -> dict[str, Any]:
    return {
        "1": connection(base_url, env),
        "2": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "3": {
            "class_type": "DynamiCrafterDirectorDescribeImage",
            "inputs": {"director": ["1", 0], "image": ["2", 0], "temperature": 0.0, "seed": fresh_seed()},
        },
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }


def soundtrack_prompt(base_url: str, env: str, folder: str, frames: int = 1, fps: float = 8.0) -> dict[str, Any]:
    return {
        "1": connection(base_url, env),
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
                "seed": fresh_seed(),
            },
        },
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
    }


def printable(value: Any) -> str:
    return json.dumps(value, default=lambda o: f"<tensor {tuple(o.shape)}>" if isinstance(o, torch.Tensor) else repr(o))


def assert_hidden(secret: str, *texts: str) -> None:
    for form in redact.key_forms(secret):
        for text in texts:
            assert form not in text, f"a form of the secret ({form[:6]}...) leaked"


def recorded(*fakes: H.FakeOpenAI) -> str:
    return json.dumps([[r.path, r.headers, r.body] for fake in fakes for r in fake.requests])


def music(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_tone(folder / "calm_sea.wav", 0.5, 8000, 220.0, channels=1)
    return folder


def private_folder(root: Path, token: str) -> Path:
    """A folder outside every allowed one, holding a track and tags the model must never see."""
    private = music(root / "private")
    (private / "tags.json").write_text(json.dumps({"calm_sea.wav": f"PRIVATE {token}"}))
    return private
