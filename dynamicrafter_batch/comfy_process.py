"""A headless ComfyUI server as a child process: start it, wait until it answers, stop it (or kill it).

Shared by ``scripts/run`` and the tests that need a real server. Standard library only. The server
listens on 127.0.0.1 only, never opens a browser, loads no paid API nodes and keeps its database beside
its log (an in-memory one makes 0.8.0 log pool errors from its worker threads); its output goes to a log
file whose tail error messages quote.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

PACK_ROOT = Path(__file__).resolve().parents[1]


def comfyui_dir() -> Path:
    """The ComfyUI to use: ``$COMFYUI_DIR``, else the newest release the project's scripts provisioned
    (``.cache/comfyui-<release>``, see scripts/lib/env.sh), else ``.cache/comfyui-<none>`` (not there)."""
    value = os.environ.get("COMFYUI_DIR")
    if value:
        return Path(value).expanduser().resolve()

    def release(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in folder.name.split("-", 1)[1].split(".") if part.isdigit())

    provisioned = sorted((PACK_ROOT / ".cache").glob("comfyui-*.*"), key=release)
    return provisioned[-1] if provisioned else PACK_ROOT / ".cache" / "comfyui-<none>"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_folders(work_dir: Path) -> list[str]:
    """The server's input, output, temp and user folders under ``work_dir`` (ComfyUI's own stay untouched)."""
    dirs = {kind: work_dir / kind for kind in ("input", "output", "temp", "user")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    return [
        "--input-directory",
        str(dirs["input"]),
        "--output-directory",
        str(dirs["output"]),
        "--temp-directory",
        str(dirs["temp"]),
        "--user-directory",
        str(dirs["user"].resolve()),
    ]


class ComfyProcess:
    """``python main.py`` of the ComfyUI in ``comfy_dir`` on 127.0.0.1, in its own process group.

    ``folder_args``: where the server keeps its files (``--base-directory DIR``, or ``--input-directory``
    and friends); ``extra_paths``: an extra-model-paths YAML (model folders, a ``custom_nodes`` entry).
    ``own_group=False`` keeps the server in its parent's process group, so that whoever cleans up the parent's
    group (Ray, for a cluster worker that dies) takes the server with it.
    """

    def __init__(
        self,
        comfy_dir: Path,
        log_path: Path,
        *,
        folder_args: Sequence[str] = (),
        port: int | None = None,
        python: str = sys.executable,
        extra_paths: Path | None = None,
        cpu: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        own_group: bool = True,
    ) -> None:
        self.comfy_dir = Path(comfy_dir)
        self.log_path = Path(log_path)
        self.folder_args = list(folder_args)
        self.port = port or free_port()
        self.python = python
        self.extra_paths = extra_paths
        self.cpu = cpu
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self.own_group = own_group
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [
            self.python,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--disable-api-nodes",
            "--database-url",
            f"sqlite:///{self.log_path.with_suffix('.db')}",
            *self.folder_args,
        ]
        if self.extra_paths is not None:
            command += ["--extra-model-paths-config", str(self.extra_paths)]
        if self.cpu:
            command.append("--cpu")
        return command + self.extra_args

    def start(self) -> ComfyProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.comfy_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=self.own_group,
            env=self.env,
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 600.0, node: str | None = None) -> None:
        """Until the server answers (with ``node`` registered, when given); raises with the log's tail otherwise."""
        path = f"/object_info/{node}" if node else "/system_stats"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"ComfyUI exited with code {self.process.returncode} while starting:\n{self.log_tail()}"
                )
            try:
                body = self.fetch_text(path)
                if node is None or node in body:
                    return
                raise RuntimeError(
                    f"ComfyUI started without the {node} node (the pack did not load):\n{self.log_tail()}"
                )
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def fetch_text(self, path: str) -> str:
        """The server's answer at ``path``; ``URLError`` / ``ConnectionError`` / ``TimeoutError`` while it is not up."""
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL to the server (its process group, when it has its own), as a crash would."""
        if self.alive():
            self._kill()
            self.process.wait()
        self._close_log()

    def stop(self, grace: float = 5.0) -> None:
        """SIGINT (ComfyUI's own clean exit), SIGKILL to its process group after ``grace`` seconds (an idle
        server is gone at once; one busy in a node may not notice SIGINT until the node ends)."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self._kill()
                self.process.wait()
        self._close_log()

    def _kill(self) -> None:
        if self.own_group:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.kill()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(the log is empty)"

    def __enter__(self) -> ComfyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
