"""The real ComfyUI, in-process and CPU-only, for host tests: the ``comfy_host`` fixture.

ComfyUI comes from the folder in ``$COMFYUI_DIR`` (default: the newest ``<repo>/.cache/comfyui-<release>``, where the project's
scripts extract the pinned snapshot). The pack is imported as the package ``dynamicrafter_pack`` (its
folder name is not a Python name, and the pack's own ``nodes`` package would shadow ComfyUI's ``nodes``
module), its ``comfy_entrypoint`` nodes are registered the way ``nodes.load_custom_node`` does, and
``host.register(...)`` adds any further node classes. ``host.run_prompt(prompt)`` runs an API-format
prompt through ``execution.PromptExecutor`` and returns every node's outputs.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import shutil
import subprocess
import sys
import types
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK_PACKAGE = "dynamicrafter_pack"


class _StubServer:
    """Just enough of server.PromptServer for execution.PromptExecutor."""

    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: dict = {}

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def send_sync(self, event: str, data: Any, sid: Any = None) -> None:
        self.events.append((event, data))

    def queue_updated(self) -> None:
        pass


@dataclass
class PromptRun:
    """The result of one in-process prompt run."""

    prompt_id: str
    success: bool
    messages: list[tuple[str, dict]]
    ui: dict[str, Any]
    outputs: dict[str, list[list[Any]]] = field(default_factory=dict)

    def output(self, node_id: str, index: int = 0) -> Any:
        """Output ``index`` of a node: the value itself, or the whole list for list outputs."""
        values = self.outputs[str(node_id)][index]
        return values[0] if len(values) == 1 else values

    def output_list(self, node_id: str, index: int = 0) -> list[Any]:
        """Output ``index`` of a node as the list ComfyUI holds (one item per list element)."""
        return list(self.outputs[str(node_id)][index])

    @property
    def error(self) -> dict[str, Any] | None:
        """The ``execution_error`` message, when a node failed."""
        for event, data in self.messages:
            if event == "execution_error":
                return data
        return None


class ComfyHost:
    """Access to the imported ComfyUI (``nodes``, ``execution``, ``folder_paths``) and the pack."""

    def __init__(self, comfy_dir: Path, work_dir: Path) -> None:
        self.comfy_dir = comfy_dir
        _prefer_comfyui_on_path(comfy_dir)
        from comfy.cli_args import args

        args.cpu = True  # before comfy.model_management decides the device at import
        args.disable_api_nodes = True
        import comfy.model_management  # noqa: F401

        # isort: split
        # ComfyUI's `utils` package first, as its main.py does, so that comfy_extras modules importing `utils.*`
        # do not meet comfy/utils.py instead.
        import utils.install_util  # noqa: F401

        # isort: split
        import execution
        import folder_paths

        import nodes

        self.nodes = nodes
        self.execution = execution
        self.folder_paths = folder_paths
        for kind in ("output", "temp", "input"):
            (work_dir / kind).mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(work_dir / "output"))
        folder_paths.set_temp_directory(str(work_dir / "temp"))
        folder_paths.set_input_directory(str(work_dir / "input"))
        self._extras_loaded = False
        self.pack = _import_pack()
        extension = asyncio.run(self.pack.comfy_entrypoint())
        self.pack_nodes: list[type] = list(asyncio.run(extension.get_node_list()))
        self.register(self.pack_nodes)

    def import_pack_module(self, name: str) -> types.ModuleType:
        """A module of the pack by its dotted path inside the pack, e.g. ``nodes.director``."""
        return importlib.import_module(f"{PACK_PACKAGE}.{name}")

    def register(self, node_classes: Iterable[type]) -> None:
        """Register V3 node classes (by schema node_id) as ``nodes.load_custom_node`` does."""
        for node_class in node_classes:
            schema = node_class.GET_SCHEMA()
            self.nodes.NODE_CLASS_MAPPINGS[schema.node_id] = node_class
            if schema.display_name is not None:
                self.nodes.NODE_DISPLAY_NAME_MAPPINGS[schema.node_id] = schema.display_name

    def load_builtin_extras(self) -> None:
        """The host's comfy_extras nodes (CreateVideo, SaveVideo, audio nodes...); loaded once, on demand."""
        if not self._extras_loaded:
            asyncio.run(self.nodes.init_builtin_extra_nodes())
            self._extras_loaded = True

    def new_executor(self) -> Any:
        """A ``PromptExecutor`` built as this host's ``main.py`` builds it (the arguments differ by release)."""
        executor_class = self.execution.PromptExecutor
        return executor_class(_StubServer(), **_executor_arguments(executor_class))

    def run_prompt(
        self,
        prompt: dict[str, Any],
        outputs: Iterable[str] | None = None,
        extra_data: dict[str, Any] | None = None,
        check: bool = True,
    ) -> PromptRun:
        """Validate and execute an API-format prompt in-process.

        ``outputs``: node ids to execute (with what they need) even when they are not output nodes;
        default: the prompt's output nodes. With ``check`` a failed run raises AssertionError.
        """
        prompt_id = uuid.uuid4().hex
        if outputs is None:
            valid = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
            if not valid[0]:
                raise AssertionError(f"prompt does not validate: {valid[1]} {valid[3]}")
            targets = list(valid[2])
        else:
            targets = [str(node_id) for node_id in outputs]
            validated: dict[str, Any] = {}
            for node_id in targets:
                ok, reasons, _ = asyncio.run(self.execution.validate_inputs(prompt_id, prompt, node_id, validated))
                if not ok:
                    raise AssertionError(f"node {node_id} does not validate: {reasons}")
        executor = self.new_executor()
        executor.execute(prompt, prompt_id, dict(extra_data or {}), targets)
        collected: dict[str, list[list[Any]]] = {}
        outputs_cache = executor.caches.outputs
        read_cached = getattr(outputs_cache, "get_local", outputs_cache.get)  # 0.33.0's get is a coroutine
        for node_id in prompt:
            cached = read_cached(node_id)
            if cached is not None:
                collected[str(node_id)] = list(getattr(cached, "outputs", cached))
        run = PromptRun(
            prompt_id,
            executor.success,
            list(executor.status_messages),
            executor.history_result.get("outputs", {}),
            collected,
        )
        if check and not run.success:
            error = run.error or {}
            raise AssertionError(f"prompt failed in {error.get('node_type')}: {error.get('exception_message')}")
        return run


def _executor_arguments(executor_class: type) -> dict[str, Any]:
    """The ``cache_args`` this host's own ``main.py`` gives ``PromptExecutor``, with the executor's default cache.

    Releases differ: 0.8.0 reads ``cache_args["ram"]`` after every node; 0.33.0 also reads
    ``cache_args["ram_inactive"]`` at the start of every prompt, and its ``--cache-ram`` is a list of GB values
    (``[]`` by default) where 0.8.0 has one number. The tests keep the executor's default (classic) cache, so the
    RAM-pressure limits are zero, as ``main.py`` leaves them outside the RAM-pressure cache.
    """
    from comfy.cli_args import args

    cache_args: dict[str, Any] = {"lru": args.cache_lru, "ram": 0}
    if isinstance(args.cache_ram, list):
        cache_args["ram_inactive"] = 0
    return {"cache_args": cache_args}


def _prefer_comfyui_on_path(comfy_dir: Path) -> None:
    """Put ComfyUI first on sys.path and drop the pack's own ``nodes`` package if a test imported it by name."""
    if str(comfy_dir) in sys.path:
        sys.path.remove(str(comfy_dir))
    sys.path.insert(0, str(comfy_dir))
    loaded = sys.modules.get("nodes")
    pack_nodes = str(ROOT / "nodes")
    if loaded is not None and pack_nodes in [str(Path(p).resolve()) for p in getattr(loaded, "__path__", [])]:
        for name in [n for n in sys.modules if n == "nodes" or n.startswith("nodes.")]:
            del sys.modules[name]


def _import_pack() -> types.ModuleType:
    """The repository root imported as the package ``dynamicrafter_pack``, as the workflow generator does."""
    from support.modules import load_by_path

    return load_by_path("_workflow_generator_host", ROOT / "workflows" / "gen" / "host.py").load_pack()


@pytest.fixture(scope="session")
def comfy_host(tmp_path_factory: pytest.TempPathFactory) -> ComfyHost:
    """ComfyUI imported in-process (CPU), with the pack loaded; shared by every host test of the session."""
    from support.comfy_server import comfyui_dir

    comfy_dir = comfyui_dir()
    if not (comfy_dir / "nodes.py").is_file() or not (comfy_dir / "execution.py").is_file():
        pytest.fail(
            f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR to an extracted ComfyUI "
            "(scripts/test provisions one into .cache/comfyui-<release>)"
        )
    return ComfyHost(comfy_dir, tmp_path_factory.mktemp("comfy-host"))


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A models folder whose ``checkpoints/`` holds the full-size demo checkpoint of ``scripts/run --demo``.

    About 2 GB (the real encoders' sizes are the point of that file): written once per test run, in a
    child process (the test process never holds the weights), and removed when the run ends.
    """
    from support.host_checkpoints import DEMO_FILE_NAME

    folder = tmp_path_factory.mktemp("demo-models")
    path = folder / "checkpoints" / DEMO_FILE_NAME
    path.parent.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "dynamicrafter.fixtures.demo", str(path), "512"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=900,
    )
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder whose ``checkpoints/`` holds ``support.host_checkpoints.TINY_FILE_NAME``: a 512 file in the original layout
    with every network small (a few MB), for server tests that only need some DynamiCrafter checkpoint."""
    from support.host_checkpoints import TINY_FILE_NAME, write_host_checkpoint
    from support.reference_data import manifest_path

    folder = tmp_path_factory.mktemp("tiny-models")
    (folder / "checkpoints").mkdir()
    write_host_checkpoint(folder / "checkpoints" / TINY_FILE_NAME, "512", manifest_path("512"))
    return folder
