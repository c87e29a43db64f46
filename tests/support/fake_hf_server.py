"""A local imitation of the Hugging Face hub's file endpoints, for download tests (127.0.0.1 only).

What huggingface_hub's downloads rely on, as the real hub does it for an LFS file:

* ``HEAD/GET {hub}/{repo_id}/resolve/{revision}/{filename}`` answers ``302`` to a CDN on another origin
  (here: a second server on another port) with ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256, quoted),
  ``X-Linked-Size`` and ``ETag``; an unknown file in a known repo is ``404`` with
  ``X-Error-Code: EntryNotFound``; an unknown or private repo is ``401`` with ``X-Error-Code: RepoNotFound``.
* ``GET {cdn}/blobs/{sha256}`` serves the bytes with ``Content-Length``, ``ETag`` and ``Accept-Ranges``,
  and honours ``Range: bytes=N-`` with ``206`` and ``Content-Range``.

* ``POST {hub}/api/models/{repo_id}/paths-info/{revision}`` (form field ``paths``) lists the files asked
  for with their size, git blob id and, for LFS files, ``lfs.oid`` = the sha256, as ``HfApi.get_paths_info``
  reads it.

``hide_sha256_in_headers`` leaves out ``X-Linked-Etag`` (the ETag is then the git blob id, as for a
non-LFS file), so a client must ask the paths-info API; ``hide_sha256`` also leaves it out there.
``drop_next_get_after(n)`` makes the next CDN GET send the headers and only ``n`` bytes of the body, then
cut the connection, as a network failure half-way would. ``body = "trickle"`` makes the CDN send ``trickle_bytes``
(one) every ``trickle_s`` (a slow or hostile mirror); ``body = "flood"`` sends an endless body with no length
(a lying mirror), until the client goes. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class RecordedRequest:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


@dataclass
class FakeHub:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    private_repos: set[str] = field(default_factory=set)
    hide_sha256_in_headers: bool = False
    hide_sha256: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    body: str = "normal"
    trickle_s: float = 0.5
    trickle_bytes: int = 1
    flood_sent: int = 0
    trickle_sent: int = 0
    """Bytes of a trickling body written so far (what a test waits for before it presses Cancel)."""
    _drop_after: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    # ---------------------------------------------------------------- control
    def add_file(self, repo_id: str, filename: str, data: bytes) -> None:
        self.files[(repo_id, filename)] = data

    def drop_next_get_after(self, nbytes: int) -> None:
        with self._lock:
            self._drop_after = nbytes

    def _take_drop(self) -> int | None:
        with self._lock:
            value, self._drop_after = self._drop_after, None
            return value

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def gets(self, server: str = "cdn") -> list[RecordedRequest]:
        return [r for r in self.requests if r.server == server and r.method == "GET"]

    @property
    def url(self) -> str:
        return self._base(0)

    @property
    def cdn_url(self) -> str:
        return self._base(1)

    def _base(self, index: int) -> str:
        host, port = self._servers[index].server_address[:2]
        return f"http://{host}:{port}"

    def blob(self, sha: str) -> bytes | None:
        for data in self.files.values():
            if hashlib.sha256(data).hexdigest() == sha:
                return data
        return None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-hf-{role}", daemon=True
            ).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PATHS_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<revision>[^/]+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
_BLOB = re.compile(r"^/blobs/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-$")


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            hub.record(RecordedRequest(role, "POST", path, {k.lower(): v for k, v in self.headers.items()}))
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode("utf-8")) if length else {}
            match = _PATHS_INFO.match(path) if role == "hub" else None
            if match is None:
                return self._error(404, "EntryNotFound", "Not found", True)
            repo = unquote(match["repo"])
            if repo in hub.private_repos or repo not in {r for r, _ in hub.files}:
                return self._error(401, "RepoNotFound", "Repository not found", True)
            entries = []
            for name in form.get("paths", []):
                data = hub.files.get((repo, name))
                if data is None:
                    continue
                entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                if not hub.hide_sha256:
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            content = json.dumps(entries).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        # ------------------------------------------------------------ routing
        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            hub.record(RecordedRequest(role, self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            if role == "hub":
                self._resolve(path, body)
            else:
                self._blob(path, body)

        def _resolve(self, path: str, body: bool) -> None:
            match = _RESOLVE.match(path)
            if match is None:
                return self._error(404, "EntryNotFound", "Not found", body)
            repo, filename = unquote(match["repo"]), unquote(match["filename"])
            known_repos = {r for r, _ in hub.files}
            if repo in hub.private_repos or repo not in known_repos:
                return self._error(401, "RepoNotFound", "Repository not found", body)
            data = hub.files.get((repo, filename))
            if data is None:
                return self._error(404, "EntryNotFound", f'{filename} does not exist on "{match["revision"]}"', body)
            sha = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"{hub.cdn_url}/blobs/{sha}")
            self.send_header("X-Repo-Commit", COMMIT)
            if not (hub.hide_sha256_in_headers or hub.hide_sha256):
                self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'W/"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _blob(self, path: str, body: bool) -> None:
            match = _BLOB.match(path)
            data = hub.blob(match["sha"]) if match else None
            if data is None:
                return self._error(404, None, "No such blob", body)
            start = 0
            requested = self.headers.get("Range")
            if requested:
                range_match = _RANGE.match(requested.strip())
                if range_match is None or int(range_match["start"]) >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(range_match["start"])
            payload = data[start:]
            if body and hub.body == "flood":
                return self._flood()
            self.send_response(206 if requested else 200)
            if requested:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{match["sha"]}"')
            self.end_headers()
            if not body:
                return
            if hub.body == "trickle":
                return self._trickle(payload)
            drop = hub._take_drop()
            if drop is not None:
                self.wfile.write(payload[:drop])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)

        def _trickle(self, payload: bytes) -> None:
            try:
                for n in range(0, len(payload), hub.trickle_bytes):
                    self.wfile.write(payload[n : n + hub.trickle_bytes])
                    self.wfile.flush()
                    hub.trickle_sent += hub.trickle_bytes
                    time.sleep(hub.trickle_s)
            except OSError:
                pass  # the client went away

        def _flood(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            block = bytes(64 << 10)
            try:
                while True:
                    self.wfile.write(block)
                    hub.flood_sent += len(block)
            except OSError:
                pass  # the client went away

        def _error(self, status: int, code: str | None, message: str, body: bool) -> None:
            content = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

    return Handler


def wait_for_trickle(hub: FakeHub, sent: int, timeout: float = 60) -> None:
    """Until the trickling body has written ``sent`` bytes (the transfer is under way)."""
    deadline = time.monotonic() + timeout
    while hub.trickle_sent < sent:
        assert time.monotonic() < deadline, f"the mirror sent {hub.trickle_sent} of {sent} bytes in {timeout} s"
        time.sleep(0.01)
