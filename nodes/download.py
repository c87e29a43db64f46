"""DynamiCrafter Download Model: fetch a checkpoint from the Hugging Face hub into a ComfyUI models folder.

Nothing is downloaded at import: only when the node runs. The transfer is resumable across runs and
across ComfyUI restarts: bytes go to ``<name>.<etag>.incomplete`` beside the final file, which is kept when
the user presses Cancel or the network fails, and the next run continues it with an HTTP ``Range`` request
(``huggingface_hub.file_download.http_get`` also resumes by itself within a run when the connection drops).
Only a complete file of the size the hub announces is renamed to its final name.

Why not ``hf_hub_download(local_dir=...)``: recent huggingface_hub releases download into a temporary file
unique to each call and delete it on failure, so a cancelled 10.4 GB download starts again from zero; all
original repos name their file ``model.ckpt``, which would collide in one models folder; and the
``.cache/huggingface`` metadata it writes into the models folder goes stale once the file is renamed. The
node uses huggingface_hub's own building blocks instead (``hf_hub_url``, ``get_hf_file_metadata``,
``build_hf_headers``, ``http_get``), so ``HF_ENDPOINT``, ``HF_TOKEN`` / ``hf auth login``, ``HF_HUB_OFFLINE``,
proxies and the hub's error types behave as for any other download, with every release from 0.20 on.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import inspect
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..dynamicrafter.config import VARIANTS
from .download_integrity import (
    ALLOW_UNVERIFIED_ENV,
    IntegrityError,
    VerifiedFiles,
    allow_unverified,
    as_sha256,
    hub_sha256,
    open_partial,
    partial_size,
    verify,
)
from .download_progress import DownloadProgress, ProgressFile
from .validation import CheckedNode

log = logging.getLogger(__name__)

REVISION = "main"
KIJAI_REPO = "Kijai/DynamiCrafter_pruned"
DESTINATIONS: tuple[str, ...] = ("checkpoints", "diffusion_models")
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_METADATA_ATTEMPTS = 3


@dataclass(frozen=True)
class HubFile:
    """One downloadable checkpoint: where it is on the hub and the name it gets on disk."""

    label: str
    repo_id: str
    filename: str
    local_name: str
    note: str = ""


def _original(variant: str) -> HubFile:
    return HubFile(
        label=f"{variant} (original, full, 10.4 GB)",
        repo_id=VARIANTS[variant].hf_repo,
        filename="model.ckpt",
        local_name=VARIANTS[variant].file_name,
        note="fp32 Lightning checkpoint with both CLIP encoders and the VAE",
    )


def _kijai(label: str, filename: str, note: str) -> HubFile:
    return HubFile(label=label, repo_id=KIJAI_REPO, filename=filename, local_name=filename, note=note)


_PRUNED_NOTE = "UNet, VAE and Resampler only: load CLIP-H text and CLIP-H vision from the stock ComfyUI files"


def _cil_entries() -> tuple[HubFile, ...]:
    """Kijai's pruned copies of the CIL ("no watermark") fine-tunes (thu-ml/cond-image-leakage), under the names
    his wrapper downloads them by."""
    return tuple(
        _kijai(f"{res} CIL no-watermark (Kijai, fp16, pruned: no CLIP, 3.1 GB)", filename, _PRUNED_NOTE)
        for res, filename in (
            ("512", "dynamicrafter-CIL-512-no-watermark-fixed-pruned-fp16.safetensors"),
            ("1024", "dynamicrafter-CIL-1024-no-watermark-pruned-fp16.safetensors"),
        )
    )


CATALOGUE: dict[str, HubFile] = {
    entry.label: entry
    for entry in (
        _original("512"),
        _original("1024"),
        _original("256"),
        _original("512_interp"),
        _kijai(
            "1024 (Kijai, bf16, full, 5.2 GB)",
            "dynamicrafter_1024_v1_bf16.safetensors",
            "the original 1024 weights in bf16, with both CLIP encoders",
        ),
        _kijai("512 (Kijai, fp16, pruned: no CLIP, 3.1 GB)", "dynamicrafter_512_fp16_pruned.safetensors", _PRUNED_NOTE),
        _kijai(
            "1024 (Kijai, fp16, pruned: no CLIP, 3.1 GB)", "dynamicrafter_1024_fp16_pruned.safetensors", _PRUNED_NOTE
        ),
        _kijai(
            "512_interp (Kijai, fp16, pruned: no CLIP, 3.1 GB)",
            "dynamicrafter_512_interp_fp16_pruned.safetensors",
            _PRUNED_NOTE,
        ),
        *_cil_entries(),
    )
}
"""Combo label -> file. Labels are stored in workflows: never rename one once released."""


class ModelDownloadError(RuntimeError):
    """A download that cannot go on, with a message that says what to do."""


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


def _supported_kwargs(function: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
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

    kwargs = _supported_kwargs(get_hf_file_metadata, endpoint=endpoint)
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


# --------------------------------------------------------------------------------------------------
# The transfer
# --------------------------------------------------------------------------------------------------


def partial_path(target: Path, etag: str | None) -> Path:
    """``<name>.<etag>.incomplete``: a partial file only resumes against the same version of the file."""
    tag = re.sub(r"[^0-9A-Za-z]", "", etag or "")[:16] or "unknown"
    return target.with_name(f"{target.name}.{tag}.incomplete")


def _drop_stale_partials(target: Path, keep: Path) -> None:
    for stale in target.parent.glob(f"{glob.escape(target.name)}.*.incomplete"):
        if stale != keep:
            log.info("DynamiCrafter download: removing %s (partial download of another version)", stale)
            stale.unlink(missing_ok=True)


def _check_disk_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ModelDownloadError(
            f"Not enough disk space in {folder}: the download needs {needed / 1e9:.1f} GB more, "
            f"{free / 1e9:.1f} GB are free."
        )


def transfer(remote: RemoteFile, target: Path) -> None:
    """Download ``remote`` into ``target``, resuming ``<target>.<etag>.incomplete`` when present."""
    from huggingface_hub.file_download import http_get

    partial = partial_path(target, remote.etag)
    _drop_stale_partials(target, partial)
    resume = partial_size(partial)
    if remote.size is not None and resume > remote.size:
        log.warning("DynamiCrafter download: %s is larger than the file on the hub; starting again", partial)
        resume = 0
    if remote.size is not None:
        _check_disk_space(target.parent, remote.size - resume)
    if resume:
        log.info("DynamiCrafter download: resuming %s at %d of %s bytes", remote.url, resume, remote.size)
    else:
        log.info("DynamiCrafter download: %s -> %s (%s bytes)", remote.url, target, remote.size)

    progress = DownloadProgress(remote.size, resume)
    if remote.size is None or resume < remote.size:
        with open_partial(partial, resume > 0) as raw:
            kwargs = _supported_kwargs(
                http_get,
                resume_size=resume,
                headers=download_headers(remote),
                expected_size=remote.size,
                displayed_filename=target.name,
            )
            http_get(remote.location, ProgressFile(raw, progress), **kwargs)

    size = os.lstat(partial).st_size
    if remote.size is not None and size != remote.size:
        raise OSError(f"{partial} has {size} bytes, the hub announced {remote.size}")
    if remote.sha256 is not None:
        try:
            verify(
                partial,
                remote.sha256,
                remote.url,
                comfy.model_management.throw_exception_if_processing_interrupted,
                follow_links=False,
                remember=False,
            )
        except IntegrityError as error:
            partial.unlink(missing_ok=True)
            raise IntegrityError(
                f"The download of {target.name} is damaged: {error} The damaged file was deleted; "
                "run the node again to download it afresh."
            ) from error
    os.replace(partial, target)
    progress.finish(size)
    log.info("DynamiCrafter download: saved %s", target)


@dataclass(frozen=True)
class DownloadResult:
    name: str
    """The file name relative to the models folder (what a loader's combo lists)."""
    path: Path
    downloaded: bool
    message: str


def _on_disk(destination: str, name: str) -> Path | None:
    found = folder_paths.get_full_path(destination, name)
    return Path(found) if found else None


def with_published_sha256(remote: RemoteFile, entry: HubFile, endpoint: str) -> RemoteFile:
    """``remote`` with the hub's sha256 (from the paths-info API when the ETag is not one); refuses a file
    the hub publishes no hash for, unless the administrator allows unverified downloads."""
    sha256 = remote.sha256 or hub_sha256(entry.repo_id, entry.filename, REVISION, endpoint)
    if sha256 is None and not allow_unverified():
        raise ModelDownloadError(
            f"The hub reports no sha256 for {remote.url}, so the download cannot be verified and was not started. "
            f"Use the Hugging Face hub itself (unset HF_ENDPOINT), or download the file yourself; an administrator "
            f"can accept unverified files with {ALLOW_UNVERIFIED_ENV}=1."
        )
    return dataclasses.replace(remote, sha256=sha256)


def check_existing(entry: HubFile, existing: Path, remote: RemoteFile) -> DownloadResult:
    """A file already under the final name: kept when its size and sha256 are the hub's (hashed once, then
    remembered by size and mtime); otherwise the user is told to move it away (it is never overwritten)."""
    size = existing.stat().st_size
    if remote.size is not None and size != remote.size:
        raise ModelDownloadError(
            f"{existing} exists but has {size} bytes, while {remote.url} has {remote.size} bytes. It is not the file "
            "this node downloads (or it is damaged): delete or rename it, then run the node again."
        )
    if remote.sha256 is not None:
        try:
            verify(
                existing, remote.sha256, remote.url, comfy.model_management.throw_exception_if_processing_interrupted
            )
        except IntegrityError as error:
            raise ModelDownloadError(
                f"{existing} exists with the right size, but {error} It is damaged or another "
                "file: delete or rename it, then run the node again."
            ) from error
    checked = ", sha256 verified" if remote.sha256 else ""
    return DownloadResult(
        entry.local_name,
        existing,
        False,
        f"{entry.local_name} is already in {existing.parent} ({size / 1e9:.2f} GB{checked}).",
    )


def ensure_model(entry: HubFile, destination: str) -> DownloadResult:
    """Make sure ``entry`` is in the ``destination`` models folder; download (or resume) it when it is not."""
    folder = Path(folder_paths.get_folder_paths(destination)[0])
    existing = _on_disk(destination, entry.local_name)
    endpoint = hub_endpoint()
    url = resolve_url(entry, endpoint)
    try:
        remote = fetch_metadata(url, endpoint)
    except comfy.model_management.InterruptProcessingException:
        raise
    except Exception as error:
        if existing is not None:
            log.warning(
                "DynamiCrafter download: could not check %s (%s); using the file already at %s", url, error, existing
            )
            known = VerifiedFiles(existing.parent).known_sha256(existing.name, existing)
            checked = "its sha256 was verified earlier" if known else "not checked against the hub"
            return DownloadResult(
                entry.local_name, existing, False, f"{entry.local_name} is already in {existing.parent} ({checked})."
            )
        raise ModelDownloadError(explain_failure(error, entry, url, folder)) from error

    remote = with_published_sha256(remote, entry, endpoint)
    if existing is not None:
        return check_existing(entry, existing, remote)

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.local_name
    try:
        transfer(remote, target)
    except comfy.model_management.InterruptProcessingException:
        log.info("DynamiCrafter download: cancelled; run the node again to resume %s", entry.local_name)
        raise
    except (ModelDownloadError, IntegrityError) as error:
        raise ModelDownloadError(str(error)) from error
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise ModelDownloadError(f"Cannot write {target}: {error}") from error
        raise ModelDownloadError(explain_failure(error, entry, url, folder)) from error
    except Exception as error:
        raise ModelDownloadError(explain_failure(error, entry, url, folder)) from error
    if remote.sha256 is not None:
        VerifiedFiles(folder).remember(target.name, target, remote.sha256)  # the partial's check, under its new name
    size = target.stat().st_size
    checked = ", sha256 verified" if remote.sha256 else ", not verified: the hub reported no sha256"
    return DownloadResult(
        entry.local_name, target, True, f"Downloaded {entry.local_name} ({size / 1e9:.2f} GB{checked}) into {folder}."
    )


# --------------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------------


class DynamiCrafterModelDownload(CheckedNode):
    """Downloads a DynamiCrafter checkpoint from the Hugging Face hub when it runs."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterModelDownload",
            display_name="DynamiCrafter Download Model",
            category="DynamiCrafter/loaders",
            description=(
                "Downloads a DynamiCrafter checkpoint from the Hugging Face hub into a ComfyUI models "
                "folder when the node runs; skips files already there and resumes a cancelled or "
                "broken download. Honours HF_ENDPOINT and HF_TOKEN."
            ),
            is_output_node=True,
            inputs=[
                io.Combo.Input(
                    "model",
                    options=list(CATALOGUE),
                    default=next(iter(CATALOGUE)),
                    tooltip=(
                        "Which checkpoint to fetch. 'original' files come from the authors' repositories "
                        "(Doubiiu/DynamiCrafter*) and are saved as dynamicrafter_<variant>_v1.ckpt; 'Kijai' "
                        "files come from Kijai/DynamiCrafter_pruned under their own names. Pruned files have "
                        "no CLIP encoders: use them with the stock CLIP-H text and vision files."
                    ),
                ),
                io.Combo.Input(
                    "destination",
                    options=list(DESTINATIONS),
                    default=DESTINATIONS[0],
                    tooltip=(
                        "The ComfyUI models folder to save into (its first configured path, e.g. "
                        "models/checkpoints). Choose the folder your DynamiCrafter loader reads from."
                    ),
                ),
            ],
            outputs=[
                io.String.Output(
                    "file_name",
                    display_name="file_name",  # named the same by every host release (0.3.64 would show STRING)
                    tooltip="The checkpoint's file name inside the chosen models folder, for the loader's file input.",
                ),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, model: str, destination: str) -> Any:
        """Runs again when the file appears, disappears or changes size, never from a stale cache."""
        entry = CATALOGUE.get(model)
        if entry is None or destination not in DESTINATIONS:
            return None
        found = _on_disk(destination, entry.local_name)
        return (str(found), found.stat().st_size) if found is not None else "missing"

    @classmethod
    def execute(cls, model: str, destination: str) -> io.NodeOutput:
        entry = CATALOGUE.get(model)
        if entry is None:
            raise ModelDownloadError(f"Unknown model choice {model!r}; choose one of: {', '.join(CATALOGUE)}")
        if destination not in DESTINATIONS:
            raise ModelDownloadError(f"Unknown destination {destination!r}; choose one of: {', '.join(DESTINATIONS)}")
        result = ensure_model(entry, destination)
        log.info("DynamiCrafter download: %s", result.message)
        return io.NodeOutput(result.name, ui=ui.PreviewText(result.message))


NODES: list[type[io.ComfyNode]] = [DynamiCrafterModelDownload]
