"""A real headless ComfyUI server in a subprocess, with this pack installed as a user would have it.

``ServerSetup.create(tmp)`` lays out a throwaway install: a ``custom_nodes`` folder holding a symlink to the
repository (named after the pack's registry id, so the pack loads exactly as a cloned pack does), model
folders, and an ``extra_model_paths.yaml`` that points ComfyUI at both. ``ComfyServer`` starts
``main.py --cpu --listen 127.0.0.1`` on a free port with ``--base-directory`` in the same temp folder (input,
output, temp and user files never touch the ComfyUI checkout), waits until it answers, and stops it.
``ComfyServer.run`` queues an API-format prompt and follows it on the websocket until it succeeds, fails
or is interrupted. Also: the prompt helpers the workflow tests share.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from dynamicrafter_batch.comfy_process import ComfyProcess, comfyui_dir  # noqa: F401  (comfyui_dir: for the tests)

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
API_WORKFLOWS = WORKFLOWS / "api"
WORKFLOW_INPUTS = WORKFLOWS / "inputs"

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Shipped workflows, made small enough for CPU tests
# --------------------------------------------------------------------------------------------------


def workflow_names() -> list[str]:
    """The UI workflows at the top of ``workflows/`` (what the template browser lists)."""
    return sorted(p.stem for p in WORKFLOWS.glob("*.json"))


def load_api_workflow(name: str) -> dict[str, Any]:
    return json.loads((API_WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def nodes_of(prompt: dict[str, Any], class_type: str) -> list[dict[str, Any]]:
    return [node for node in prompt.values() if node["class_type"] == class_type]


LOADERS = ("DynamiCrafterCheckpointLoader", "DynamiCrafterLoadModel")
CONDITIONINGS = ("DynamiCrafterImageToVideo", "DynamiCrafterInterpolation")
FIT_TO_SIZE = "ImageScale"
"""Fits a video's frames or a picture to the conditioning node's size (the start latent of the control workflows)."""


def shrink_workflow(
    prompt: dict[str, Any], *, ckpt_name: str | None = None, width: int = 128, height: int = 64, steps: int = 2
) -> dict[str, Any]:
    """A copy of an API workflow at a CPU-friendly size (and, optionally, on another checkpoint file)."""
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in LOADERS and ckpt_name is not None:
            inputs["ckpt_name" if "ckpt_name" in inputs else "model_name"] = ckpt_name
        elif node["class_type"] in CONDITIONINGS or node["class_type"] == FIT_TO_SIZE:
            inputs.update(width=width, height=height)
        elif node["class_type"] == "DynamiCrafterSampler":
            inputs["steps"] = steps
    return prompt


# --------------------------------------------------------------------------------------------------
# A throwaway install
# --------------------------------------------------------------------------------------------------


def pack_folder_name() -> str:
    """The folder name a user's install gives the pack: its registry id (``[project].name``)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the first `name = "..."` of the [project] table
        match = re.search(r'^\[project\][^\[]*?^name\s*=\s*"([^"]+)"', text, re.MULTILINE | re.DOTALL)
        if match is None:
            raise ValueError("no [project] name in pyproject.toml") from None
        return match.group(1)
    return tomllib.loads(text)["project"]["name"]


@dataclass
class ServerSetup:
    base: Path
    custom_nodes: Path
    models: Path
    config: Path
    pack_name: str

    @classmethod
    def create(cls, root: Path, model_folders: Iterable[str] = ("checkpoints", "diffusion_models")) -> ServerSetup:
        pack_name = pack_folder_name()
        base, custom_nodes, models = root / "comfy", root / "extra_custom_nodes", root / "models"
        for folder in (base / "custom_nodes", base / "input", custom_nodes, models):
            folder.mkdir(parents=True, exist_ok=True)
        (custom_nodes / pack_name).symlink_to(ROOT, target_is_directory=True)
        config = {"dynamicrafter_tests": {"base_path": str(root), "custom_nodes": custom_nodes.name}}
        for folder in model_folders:
            (models / folder).mkdir(exist_ok=True)
            config["dynamicrafter_tests"][folder] = f"{models.name}/{folder}"
        path = root / "extra_model_paths.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return cls(base, custom_nodes, models, path, pack_name)

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


@dataclass
class HttpReply:
    status: int
    body: Any


@dataclass
class PromptRun:
    """One prompt followed on the websocket."""

    prompt_id: str
    outcome: str
    """``execution_success``, ``execution_error`` or ``execution_interrupted``."""
    messages: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["type"] == kind]

    @property
    def error(self) -> dict[str, Any]:
        errors = self.of_type("execution_error")
        assert errors, f"the prompt did not fail: {self.outcome}"
        return errors[0]


class PromptRejected(AssertionError):
    """POST /prompt answered with an error (validation failed)."""

    def __init__(self, reply: HttpReply) -> None:
        super().__init__(f"prompt rejected ({reply.status}): {json.dumps(reply.body)[:2000]}")
        self.reply = reply


_OUTCOMES = ("execution_success", "execution_error", "execution_interrupted")


class ComfyServer(ComfyProcess):
    """The server of a :class:`ServerSetup` (``--base-directory`` and its extra-model-paths file), with the
    HTTP and websocket calls the tests make."""

    def __init__(self, comfy_dir: Path, setup: ServerSetup, log_path: Path) -> None:
        super().__init__(
            comfy_dir, log_path, folder_args=["--base-directory", str(setup.base)], extra_paths=setup.config
        )
        self.setup = setup

    # ---- HTTP GET (stdlib) ----

    def get(self, path: str, timeout: float = 60) -> HttpReply:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return HttpReply(response.status, _decode(response.read(), response.headers.get_content_type()))
        except urllib.error.HTTPError as error:
            return HttpReply(error.code, _decode(error.read(), error.headers.get_content_type()))

    # ---- a prompt, followed on the websocket ----

    def run(self, prompt: dict[str, Any], timeout: float = 300, interrupt_at_progress: int | None = None) -> PromptRun:
        """Queue ``prompt`` and wait for its outcome; with ``interrupt_at_progress``, POST /interrupt once a
        ``progress`` event of the prompt reaches that value. Raises PromptRejected when it does not validate."""
        return asyncio.run(asyncio.wait_for(self._run(prompt, interrupt_at_progress), timeout))

    async def _run(self, prompt: dict[str, Any], interrupt_at: int | None) -> PromptRun:
        client_id = uuid.uuid4().hex
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}", max_msg_size=0) as ws:
                async with session.post(
                    f"{self.url}/prompt", json={"prompt": prompt, "client_id": client_id}
                ) as response:
                    reply = HttpReply(response.status, await response.json(content_type=None))
                if reply.status != 200:
                    raise PromptRejected(reply)
                run = PromptRun(reply.body["prompt_id"], "")
                interrupted = False
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue  # binary frames: previews
                    event = json.loads(message.data)
                    data = event.get("data") or {}
                    if data.get("prompt_id") != run.prompt_id:
                        continue
                    run.messages.append(event)
                    if (
                        interrupt_at is not None
                        and not interrupted
                        and event["type"] == "progress"
                        and data.get("value", 0) >= interrupt_at
                    ):
                        async with session.post(f"{self.url}/interrupt", json={"prompt_id": run.prompt_id}):
                            interrupted = True
                    if event["type"] in _OUTCOMES:
                        run.outcome = event["type"]
                        return run
        raise ConnectionError(f"the websocket closed before prompt {run.prompt_id} finished:\n{self.log_tail()}")

    def history(self, prompt_id: str, timeout: float = 30) -> dict[str, Any]:
        """The prompt's history entry; the server writes it just after the prompt's last websocket event."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get(f"/history/{prompt_id}").body.get(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"no history for prompt {prompt_id} after {timeout:.0f} s")
            time.sleep(0.2)

    def output_files(self, prompt_id: str) -> list[Path]:
        """Files the prompt's output nodes saved (``images`` entries of type output), as local paths."""
        files = []
        for output in self.history(prompt_id)["outputs"].values():
            for entry in output.get("images", []) + output.get("animated", []) + output.get("videos", []):
                if isinstance(entry, dict) and entry.get("type") == "output":
                    files.append(self.setup.output_dir / entry.get("subfolder", "") / entry["filename"])
        return files


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == "application/json":
        return json.loads(raw or b"null")
    if content_type.startswith("text/"):
        return raw.decode("utf-8", errors="replace")
    return raw
