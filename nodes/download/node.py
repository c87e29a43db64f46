"""DynamiCrafter Download Model: fetch a checkpoint from the Hugging Face hub into a ComfyUI models folder.

Nothing is downloaded at import: only when the node runs, and only when its file name is used by another
node of the prompt (an admin may allow unconnected downloads: ``DYNAMICRAFTER_DOWNLOADS``). Bytes go to
``<name>.<etag>.incomplete`` beside the final file and only a complete file of the size the hub states, with
its published sha256, is renamed to its final name. ``download_transfer`` streams them: never more than the
stated size, within a deadline, and Cancel stops it within a fraction of a second. A broken connection is
resumed within the run with an HTTP ``Range`` request; after Cancel or a failure the partial file is
deleted, unless the admin keeps partial files for a resume on the next run
(``DYNAMICRAFTER_RESUME_DOWNLOADS=1``): the message says which.

Why not ``hf_hub_download(local_dir=...)``: recent huggingface_hub releases download into a temporary file
unique to each call, all original repos name their file ``model.ckpt``, which would collide in one models
folder, and the ``.cache/huggingface`` metadata it writes into the models folder goes stale once the file is
renamed; its ``http_get`` reads 10 MiB chunks with no size bound and no Cancel in between. The node uses
huggingface_hub's own pieces for the rest (``hf_hub_url``, ``get_hf_file_metadata``, ``build_hf_headers``),
so ``HF_ENDPOINT``, ``HF_TOKEN`` / ``hf auth login``, ``HF_HUB_OFFLINE`` and the hub's error types behave as
for any other download.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..adapter.validation import CheckedNode
from .catalogue import CATALOGUE, REVISION, HubFile
from .hub import (
    ModelDownloadError,
    RemoteFile,
    download_headers,
    explain_failure,
    fetch_metadata,
    hub_endpoint,
    resolve_url,
)
from .integrity import (
    ALLOW_UNVERIFIED_ENV,
    IntegrityError,
    VerifiedFiles,
    allow_unverified,
    hub_sha256,
    open_partial,
    partial_size,
    verify,
)
from .progress import DownloadProgress
from .transfer import TooLarge, TransferError, stream_into

log = logging.getLogger(__name__)

DESTINATIONS: tuple[str, ...] = ("checkpoints", "diffusion_models")


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


RESUME_ENV = "DYNAMICRAFTER_RESUME_DOWNLOADS"


def keep_partials() -> bool:
    """Whether the admin keeps partial downloads for a resume on the next run (read at each download)."""
    return os.environ.get(RESUME_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _after_failure(partial: Path, size: int) -> str:
    """Keep or delete the partial file after Cancel or a failed transfer; the words that say which."""
    done = partial_size(partial)
    if keep_partials() and done:
        return f"The {done} of {size} bytes received are kept in {partial.name}; run the node again to resume."
    partial.unlink(missing_ok=True)
    return f"The partial file was deleted (an administrator can keep partial downloads to resume: {RESUME_ENV}=1)."


def transfer(remote: RemoteFile, target: Path) -> None:
    """Download ``remote`` into ``target``, resuming ``<target>.<etag>.incomplete`` when one was kept."""
    if remote.size is None:
        raise ModelDownloadError(
            f"The hub states no size for {remote.url}, so the download could not be bounded and was not started."
        )
    partial = partial_path(target, remote.etag)
    _drop_stale_partials(target, partial)
    resume = partial_size(partial)
    if resume > remote.size:
        log.warning("DynamiCrafter download: %s is larger than the file on the hub; starting again", partial)
        resume = 0
    _check_disk_space(target.parent, remote.size - resume)
    if resume:
        log.info("DynamiCrafter download: resuming %s at %d of %s bytes", remote.url, resume, remote.size)
    else:
        log.info("DynamiCrafter download: %s -> %s (%s bytes)", remote.url, target, remote.size)

    progress = DownloadProgress(remote.size, resume)
    if resume < remote.size:
        try:
            with open_partial(partial, resume > 0) as raw:
                stream_into(remote.location, download_headers(remote), raw, resume, remote.size, progress.update)
        except comfy.model_management.InterruptProcessingException:
            log.info("DynamiCrafter download: cancelled. %s", _after_failure(partial, remote.size))
            raise
        except TooLarge as error:
            partial.unlink(missing_ok=True)
            raise ModelDownloadError(
                f"The download of {target.name} from {remote.url} was stopped: {error}. The partial file was deleted."
            ) from None
        except Exception as error:
            kept = _after_failure(partial, remote.size)
            reason = str(error) if isinstance(error, TransferError) else f"{type(error).__name__}: {error}"
            raise ModelDownloadError(
                f"The download of {target.name} from {remote.url} failed: {reason}. Check the network connection, "
                f"a proxy (HTTPS_PROXY) or HF_ENDPOINT, then run the node again. {kept}"
            ) from None

    size = os.lstat(partial).st_size
    if size != remote.size:
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
        except comfy.model_management.InterruptProcessingException:
            log.info("DynamiCrafter download: cancelled while checking. %s", _after_failure(partial, remote.size))
            raise
        except IntegrityError as error:
            partial.unlink(missing_ok=True)
            raise IntegrityError(
                f"The download of {target.name} is damaged: {error} The damaged file was deleted; "
                "run the node again to download it afresh."
            ) from error
    os.replace(partial, target)
    progress.finish(size)
    log.info("DynamiCrafter download: saved %s", target)


DOWNLOADS_ENV = "DYNAMICRAFTER_DOWNLOADS"
"""``connected`` (default): the node runs only when its file name feeds another node; ``any``: also
unconnected; ``off``: no server-side downloads."""


def check_download_allowed(prompt: Any, node_id: Any) -> None:
    """Refuse a download the admin's ``DYNAMICRAFTER_DOWNLOADS`` does not allow (read at each run)."""
    policy = os.environ.get(DOWNLOADS_ENV, "connected").strip().lower() or "connected"
    if policy == "any":
        return
    if policy == "off":
        raise ModelDownloadError(
            f"Model downloads are turned off on this server ({DOWNLOADS_ENV}=off): ask its administrator to put the "
            "file into the models folder."
        )
    nodes = prompt.values() if isinstance(prompt, dict) else []
    used = any(
        isinstance(value, list) and len(value) == 2 and str(value[0]) == str(node_id)
        for node in nodes
        if isinstance(node, dict)
        for value in (node.get("inputs") or {}).values()
    )
    if not used:
        raise ModelDownloadError(
            "Download Model runs only when its file_name output feeds another node (a loader's file input): "
            f"connect it. An administrator can allow unconnected downloads with {DOWNLOADS_ENV}=any."
        )


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
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
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
        """Runs again when the file appears, changes size or time, and always while it is missing (a file
        deleted after a download is looked for again, never served from the cache)."""
        entry = CATALOGUE.get(model)
        if entry is None or destination not in DESTINATIONS:
            return None
        found = _on_disk(destination, entry.local_name)
        if found is None:
            return f"missing {uuid.uuid4()}"
        info = found.stat()
        return (str(found), info.st_size, info.st_mtime_ns)

    @classmethod
    def execute(cls, model: str, destination: str) -> io.NodeOutput:
        entry = CATALOGUE.get(model)
        if entry is None:
            raise ModelDownloadError(f"Unknown model choice {model!r}; choose one of: {', '.join(CATALOGUE)}")
        if destination not in DESTINATIONS:
            raise ModelDownloadError(f"Unknown destination {destination!r}; choose one of: {', '.join(DESTINATIONS)}")
        if _on_disk(destination, entry.local_name) is None:  # a download would start
            hidden = getattr(cls, "hidden", None)  # None when called outside the host's executor
            check_download_allowed(getattr(hidden, "prompt", None), getattr(hidden, "unique_id", None))
        result = ensure_model(entry, destination)
        log.info("DynamiCrafter download: %s", result.message)
        return io.NodeOutput(result.name, ui=ui.PreviewText(result.message))


NODES: list[type[io.ComfyNode]] = [DynamiCrafterModelDownload]
