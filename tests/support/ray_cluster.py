"""A one-machine Ray cluster that only loopback can reach, for the cluster tests and the bench.

Ray binds its servers to every interface and turns a ``127.0.0.1`` node address into the machine's own, so the
cluster runs in a network namespace of its own with nothing but loopback (``unshare --net``; a user namespace
makes that work without root): ``ray start --head --block`` there, and every driver joins it with ``nsenter``
(:meth:`RayCluster.command`). The workers' ComfyUI servers start inside as well. Stopping kills every process
in the namespace. Ray's files go to a short temporary folder (its socket paths must fit 107 characters).

Token authentication is off for this loopback cluster only (``RAY_AUTH_MODE=disabled`` in the cluster's and
its drivers' environments): a user's own cluster keeps Ray's default.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dynamicrafter_batch.comfy_process import ComfyProcess, free_port

RAY = Path(sys.executable).with_name("ray")
LOOPBACK_UP = """
import fcntl, signal, socket, struct
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    request = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, request))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS: IFF_UP
print("up", flush=True)
signal.pause()
"""
"""Run by the namespace's first process: loopback up, then wait (the namespace lives as long as it does)."""


class RayCluster:
    """``with RayCluster(log, cpus=4) as cluster: ... cluster.address ...``"""

    def __init__(self, log_path: Path, cpus: int) -> None:
        self.log_path = log_path
        self.cpus = cpus
        self.port = free_port()
        self.dashboard_port = free_port()
        self.temp = Path(tempfile.mkdtemp(prefix="ray-"))
        self.process: subprocess.Popen | None = None
        self.namespace: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self) -> dict[str, str]:
        """The environment for the cluster and its drivers (one torch thread: the machine is small)."""
        return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}

    def command(self, command: list[str]) -> list[str]:
        """``command`` run inside the cluster's network namespace."""
        target = f"--target={self.namespace.pid}"
        return ["nsenter", target, "--net", "--user", "--preserve-credentials", *command]

    def start(self) -> RayCluster:
        self.namespace = subprocess.Popen(
            ["unshare", "--net", "--map-root-user", sys.executable, "-c", LOOPBACK_UP],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        if self.namespace.stdout.readline().strip() != b"up":
            raise RuntimeError("could not make a network namespace (unshare --net --map-root-user)")
        command = [
            str(RAY),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            f"--num-cpus={self.cpus}",
            "--num-gpus=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--temp-dir={self.temp}",
            "--disable-usage-stats",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(command), stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until the dashboard answers (it starts after the cluster's control store)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ray start exited ({self.process.returncode}):\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                self.get_json(self.dashboard + "/api/version")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.5)
        raise TimeoutError(f"Ray did not come up in {timeout:.0f} s:\n{self.log_path.read_text()[-3000:]}")

    def fetch_text(self, url: str) -> str:
        """What a server in the namespace answers at ``url`` (fetched from inside); CalledProcessError when it
        does not answer."""
        fetch = (
            f"import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen({url!r}, timeout=60).read())"
        )
        result = subprocess.run(
            self.command([sys.executable, "-c", fetch]), capture_output=True, check=True, timeout=120
        )
        return result.stdout.decode("utf-8", "replace")

    def get_json(self, url: str) -> Any:
        return json.loads(self.fetch_text(url))

    def tasks(self) -> list[dict[str, Any]]:
        """The tasks Ray's dashboard lists (its state API), with their names and states."""
        return self.get_json(self.dashboard + "/api/v0/tasks?limit=10000&detail=false")["data"]["result"]["result"]

    def stop(self) -> None:
        """Ray first (5 s to stop its own processes), then whatever is left in the namespace."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.namespace is not None:
            inside = os.readlink(f"/proc/{self.namespace.pid}/ns/net")
            for pid in _pids():
                try:
                    if os.readlink(f"/proc/{pid}/ns/net") == inside:
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass  # gone already, or not ours
            self.namespace.wait()
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ComfyInside(ComfyProcess):
    """A ComfyUI server started inside a :class:`RayCluster`'s namespace (an existing server for its workers)."""

    def __init__(self, cluster: RayCluster, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster

    def command(self) -> list[str]:
        return self.cluster.command(super().command())

    def fetch_text(self, path: str) -> str:
        """The server's answer, fetched from inside the namespace (``wait_ready`` polls this)."""
        try:
            return self.cluster.fetch_text(self.url + path)
        except subprocess.CalledProcessError:
            raise ConnectionError(f"{self.url} does not answer yet") from None


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]
