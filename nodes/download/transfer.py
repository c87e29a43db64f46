"""The bytes of a model download: never more than the size the hub states, within a deadline, and stopped
within a fraction of a second by Cancel whatever the server does.

``huggingface_hub``'s ``http_get`` reads 10 MiB chunks and checks nothing between them, so a mirror that
trickles a byte every few seconds held the queue with Cancel ignored, and one that sends an endless body
filled the disk. Here a worker thread reads small pieces (``READ_SIZE``) into the partial file and stops
at the stated size; the node's own thread watches Cancel and the deadline every ``POLL_S`` and, to stop,
shuts the connection's socket down, which ends any read at once. The standard library's ``http.client``
makes the request (the one place that hands out its socket), with the proxy from the environment as
``urllib`` reads it and certifi's certificates when installed.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import BinaryIO

log = logging.getLogger(__name__)

READ_SIZE = 64 << 10
"""Largest single read: Cancel and the size bound are checked between reads this small."""
POLL_S = 0.1
CONNECT_TIMEOUT_S = 30.0
GRACE_S = 120.0
"""Time every download gets on top of its size over the slowest allowed rate."""
MIN_RATE_ENV = "DYNAMICRAFTER_DOWNLOAD_MIN_MBPS"
DEFAULT_MIN_RATE_MBPS = 1.0
"""The slowest average rate a download may have (MB/s) before it is stopped: 10.4 GB within about 3 h."""
ATTEMPTS = 5
"""Connections in a row that may break without bringing a byte before the download gives up."""
REDIRECTS = 5


class TransferError(OSError):
    """The server broke the rules (more bytes than stated, an HTTP error, too slow): the message says which."""


class TooLarge(TransferError):
    """The server sent more than the size the hub states: the partial file is deleted."""


def min_rate() -> float:
    """Bytes per second, from ``DYNAMICRAFTER_DOWNLOAD_MIN_MBPS`` (read at each download)."""
    try:
        value = float(os.environ.get(MIN_RATE_ENV, DEFAULT_MIN_RATE_MBPS))
    except ValueError:
        value = DEFAULT_MIN_RATE_MBPS
    return max(value, 0.001) * 1e6


def deadline_for(remaining: int) -> float:
    return time.monotonic() + GRACE_S + remaining / min_rate()


def _ssl_context() -> ssl.SSLContext:
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection for ``url`` (through the environment's proxy unless bypassed) and the request target."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransferError(f"cannot download from {parts.scheme}:// addresses")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                via.hostname, via.port or 8080, timeout=CONNECT_TIMEOUT_S, context=_ssl_context()
            )
            conn.set_tunnel(parts.hostname, port)
            return conn, target
        return http.client.HTTPConnection(via.hostname, via.port or 8080, timeout=CONNECT_TIMEOUT_S), url
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            parts.hostname, port, timeout=CONNECT_TIMEOUT_S, context=_ssl_context()
        ), target
    return http.client.HTTPConnection(parts.hostname, port, timeout=CONNECT_TIMEOUT_S), target


class _Attempt:
    """One GET from ``start``: the worker's state, readable from the waiting thread."""

    def __init__(self, url: str, headers: dict[str, str], out: BinaryIO, start: int, size: int) -> None:
        self.url, self.headers, self.out, self.start, self.size = url, headers, out, start, size
        self.position = start
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.changed = threading.Event()
        """Set after each write and at the end: the waiting thread reports progress then."""
        self.stopped = False
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._get(self.url, REDIRECTS)
        except BaseException as error:  # noqa: BLE001  (handed to the waiting thread, which decides)
            self.error = error
        finally:
            self.done.set()
            self.changed.set()

    def stop(self) -> None:
        """End any read at once (called from the waiting thread)."""
        with self._lock:
            self.stopped = True
            conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _get(self, url: str, redirects: int) -> None:
        conn, target = _connection(url)
        with self._lock:
            if self.stopped:
                return
            self._conn = conn
        try:
            headers = dict(self.headers)
            if self.position:
                headers["Range"] = f"bytes={self.position}-"
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location") and redirects:
                location = urllib.parse.urljoin(url, response.getheader("Location"))
                conn.close()
                return self._get(location, redirects - 1)
            self._check_status(response)
            self._read(response)
        finally:
            conn.close()

    def _check_status(self, response: http.client.HTTPResponse) -> None:
        if response.status == 200 and self.position:
            self.out.seek(0)  # the server ignored the range: the whole file comes again
            self.out.truncate()
            self.position = 0
        elif response.status not in (200, 206):
            raise TransferError(f"the server answered HTTP {response.status} {response.reason} for the file's bytes")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and self.position + int(length) > self.size:
            raise TooLarge(f"the server announces {self.position + int(length)} bytes, the hub states {self.size}")

    def _read(self, response: http.client.HTTPResponse) -> None:
        while not self.stopped:
            remaining = self.size - self.position
            data = response.read1(min(READ_SIZE, remaining + 1))
            if not data:
                return
            if len(data) > remaining:
                raise TooLarge(f"the server sent more than the {self.size} bytes the hub states")
            self.out.write(data)
            self.position += len(data)
            self.changed.set()


def stream_into(
    url: str,
    headers: dict[str, str],
    out: BinaryIO,
    start: int,
    size: int,
    on_progress: Callable[[int], None],
) -> None:
    """Fetch bytes ``start..size`` of ``url`` into ``out`` (positioned at ``start``), resuming with a range
    request when a connection breaks. ``on_progress(bytes on disk)`` runs every ``POLL_S`` in this thread;
    and after each read; what it raises (Cancel) stops the transfer at once and passes through. Raises TooLarge, TransferError
    (HTTP errors, too slow) or the last network error."""
    deadline = deadline_for(size - start)
    position, failures = start, 0
    while position < size:
        attempt = _Attempt(url, headers, out, position, size)
        worker = threading.Thread(target=attempt.run, name="dynamicrafter-download", daemon=True)
        worker.start()
        try:
            while not attempt.done.is_set():
                attempt.changed.wait(POLL_S)
                attempt.changed.clear()
                on_progress(attempt.position)
                if time.monotonic() > deadline:
                    raise TransferError(
                        f"the download took longer than its deadline ({attempt.position} of {size} bytes; the "
                        f"slowest rate allowed is {min_rate() / 1e6:g} MB/s, {MIN_RATE_ENV})"
                    )
        finally:
            attempt.stop()
            worker.join(5.0)
        out.flush()
        error = attempt.error
        if isinstance(error, TransferError) or not isinstance(error, (OSError, http.client.HTTPException, type(None))):
            raise error
        failures = 0 if attempt.position > position else failures + 1
        position = attempt.position
        if position < size and failures >= ATTEMPTS:
            raise attempt.error or TransferError(f"the server ended the file at {position} of {size} bytes")
        if position < size:
            log.warning("DynamiCrafter download: connection ended at %d of %d bytes; resuming", position, size)
    on_progress(position)
