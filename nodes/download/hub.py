"""The hub side of a download: where a file is, what the hub says about it (size, etag, sha256, redirect), the
headers to fetch it with, and a failure explained in words a user can act on."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import comfy.model_management

from .catalogue import REVISION, HubFile
from .integrity import as_sha256

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_METADATA_ATTEMPTS = 3


class ModelDownloadError(RuntimeError):
    """A download that cannot go on, with a message that says what to do."""

    __module__ = "dynamicrafter"  # as ComfyUI shows the type: never the install path


# --------------------------------------------------------------------------------------------------
# The hub: URL, metadata, errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says about a file before it is downloaded."""

    url: str
    """The ``/resolve/`` URL the node asked for (shown to the user)."""
    location: str
    """Where the bytes come from (a CDN after a redirect)."""
    etag: str | None
    size: int | None
    sha256: str | None = None
    """The content hash the hub publishes (LFS oid); None when it reports none."""


def hub_endpoint() -> str:
    """The hub to use: ``HF_ENDPOINT`` (read when the node runs), else huggingface_hub's configured endpoint."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_url(entry: HubFile, endpoint: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(entry.repo_id, entry.filename, revision=REVISION, endpoint=endpoint)


def supported_kwargs(function: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Only the keyword arguments this huggingface_hub release's ``function`` accepts."""
    parameters = inspect.signature(function).parameters
    return {name: value for name, value in kwargs.items() if name in parameters}


def _status_code(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _is_hub_http_error(error: BaseException) -> bool:
    from huggingface_hub.utils import HfHubHTTPError

    return isinstance(error, HfHubHTTPError) and _status_code(error) is not None


def _is_named(error: BaseException, *fragments: str) -> bool:
    names = [cls.__name__.lower() for cls in type(error).__mro__]
    return any(fragment in name for name in names for fragment in fragments)


def fetch_metadata(url: str, endpoint: str) -> RemoteFile:
    """HEAD the ``/resolve/`` URL (token from HF_TOKEN or the saved login), retrying transient hub errors."""
    from huggingface_hub import get_hf_file_metadata

    kwargs = supported_kwargs(get_hf_file_metadata, endpoint=endpoint)
    for attempt in range(1, _METADATA_ATTEMPTS + 1):
        comfy.model_management.throw_exception_if_processing_interrupted()
        try:
            metadata = get_hf_file_metadata(url, **kwargs)
            return RemoteFile(
                url=url,
                location=metadata.location or url,
                etag=metadata.etag,
                size=metadata.size,
                sha256=as_sha256(metadata.etag),
            )
        except Exception as error:
            transient = _status_code(error) in _RETRYABLE_STATUS or _is_named(error, "timeout")
            if not transient or attempt == _METADATA_ATTEMPTS:
                raise
            log.warning("DynamiCrafter download: %s (attempt %d of %d), retrying", error, attempt, _METADATA_ATTEMPTS)
            time.sleep(attempt)
    raise AssertionError("unreachable")


def _same_origin(first: str, second: str) -> bool:
    from urllib.parse import urlsplit

    a, b = urlsplit(first), urlsplit(second)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def download_headers(remote: RemoteFile) -> dict[str, str]:
    """huggingface_hub's headers (user agent, token); the token never leaves the hub for a CDN."""
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(library_name="comfyui-dynamicrafter-native")
    if not _same_origin(remote.url, remote.location):
        headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
    return headers


def explain_failure(error: BaseException, entry: HubFile, url: str, folder: Path) -> str:
    """A message that names the URL, the reason and what the user can do."""
    manual = f"To download it manually, open {url} in a browser and save the file as {entry.local_name} in {folder}."
    status = _status_code(error) if _is_hub_http_error(error) else None
    if status == 401:
        return (
            f"The Hugging Face hub refused access to {entry.repo_id} (HTTP 401 Unauthorized) for {url}: "
            "the repository is private or gated, does not exist, or the token is invalid. Set HF_TOKEN "
            "or run `hf auth login` with a token that can read it. " + manual
        )
    if status == 403:
        return (
            f"The Hugging Face hub forbids access to {entry.repo_id} (HTTP 403 Forbidden) for {url}: accept "
            "the repository's conditions on its page while logged in, and use a token of that account "
            "(HF_TOKEN or `hf auth login`). " + manual
        )
    if status == 404:
        return (
            f"Not found on the Hugging Face hub (HTTP 404): file {entry.filename!r} in repository "
            f"{entry.repo_id!r} at revision {REVISION!r} ({url}). The repository may have moved or "
            "removed the file. " + manual
        )
    if status is not None:
        return f"The Hugging Face hub answered HTTP {status} for {url}; try again later. " + manual
    if _is_named(error, "offlinemode"):
        return (
            f"Downloads are disabled because HF_HUB_OFFLINE is set, so {url} was not fetched. Unset "
            "HF_HUB_OFFLINE and run again, or download the file yourself. " + manual
        )
    return (
        f"Could not download {url}: {type(error).__name__}: {error}. Check the network connection, a proxy "
        "(HTTPS_PROXY) or HF_ENDPOINT, then run the node again (a partial download resumes). " + manual
    )
