"""DynamiCrafterModelDownload's integrity checks against the local fake hub: a download is verified against
the hub's sha256 before its final rename and remembered; a damaged partial file is deleted and reported; an
existing file of the right size but the wrong content is refused; an existing file is hashed once; a partial
file that is a link is never followed; nothing is written outside the models folder; a file without a
published sha256 is refused unless allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from support.download_parts import PAYLOAD, TOKEN, ProgressLog, no_partials, run_node
from support.fake_hf_server import FakeHub

pytestmark = pytest.mark.host

SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def partial_of(download: Any, folder: Path) -> Path:
    return download.partial_path(folder / "dynamicrafter_512_v1.ckpt", SHA256)


def test_download_is_verified_and_remembered(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    result = run_node(download)
    assert "sha256 verified" in result.ui.as_dict()["text"][0]
    record = json.loads((models["checkpoints"] / ".dynamicrafter_verified.json").read_text())
    assert record["dynamicrafter_512_v1.ckpt"]["sha256"] == SHA256
    assert record["dynamicrafter_512_v1.ckpt"]["size"] == len(PAYLOAD)


def test_damaged_partial_is_deleted_and_reported(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    models["checkpoints"].mkdir(parents=True)
    partial = partial_of(download, models["checkpoints"])
    damaged = bytearray(PAYLOAD[: len(PAYLOAD) // 2])
    damaged[1000] ^= 0xFF  # one flipped byte in what an earlier run left behind
    partial.write_bytes(bytes(damaged))

    with pytest.raises(download.ModelDownloadError) as raised:
        run_node(download)
    message = str(raised.value)
    assert "damaged" in message and "deleted" in message and SHA256 in message and "run the node again" in message
    assert hub.gets()[0].range == f"bytes={len(damaged)}-"  # it was resumed, then refused
    assert not (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").exists() and no_partials(models["checkpoints"])

    run_node(download)  # the next run starts afresh
    assert (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").read_bytes() == PAYLOAD


def test_existing_file_of_the_right_size_but_wrong_content_is_refused(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    models["checkpoints"].mkdir(parents=True)
    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    impostor = random.Random(1).randbytes(len(PAYLOAD))
    target.write_bytes(impostor)
    with pytest.raises(download.ModelDownloadError) as raised:
        run_node(download)
    message = str(raised.value)
    assert "right size" in message and SHA256 in message and "delete or rename" in message
    assert target.read_bytes() == impostor  # never overwritten
    assert not hub.gets()


def test_existing_file_is_hashed_once(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    integrity = sys.modules[download.__name__.rsplit(".", 1)[0] + ".integrity"]
    calls: list[Path] = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    models["checkpoints"].mkdir(parents=True)
    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    target.write_bytes(PAYLOAD)

    for _ in range(2):
        result = run_node(download)
        assert "already" in result.ui.as_dict()["text"][0] and "sha256 verified" in result.ui.as_dict()["text"][0]
    assert calls == [target]

    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))  # changed since
    run_node(download)
    assert calls == [target, target]
    assert not hub.gets()


def test_partial_file_that_is_a_link_is_never_followed(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog, tmp_path: Path
) -> None:
    victim = tmp_path / "outside" / "precious.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"must stay as it is")
    models["checkpoints"].mkdir(parents=True)
    partial = partial_of(download, models["checkpoints"])
    partial.symlink_to(victim)

    run_node(download)
    assert victim.read_bytes() == b"must stay as it is"
    assert (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").read_bytes() == PAYLOAD
    assert not partial.is_symlink() and no_partials(models["checkpoints"])
    assert hub.gets()[0].range is None  # started from zero, not from the link target's size


def test_nothing_is_written_outside_the_models_folder(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog, tmp_path: Path
) -> None:
    run_node(download)
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {
        Path("models/checkpoints/dynamicrafter_512_v1.ckpt"),
        Path("models/checkpoints/.dynamicrafter_verified.json"),
    }


def test_sha256_from_the_paths_info_api_when_headers_lack_it(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    hub.hide_sha256_in_headers = True
    models["checkpoints"].mkdir(parents=True)
    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    target.write_bytes(random.Random(2).randbytes(len(PAYLOAD)))
    with pytest.raises(download.ModelDownloadError, match=SHA256):
        run_node(download)
    posts = [r for r in hub.requests if r.method == "POST"]
    assert posts and posts[0].path == "/api/models/Doubiiu/DynamiCrafter_512/paths-info/main"
    assert posts[0].headers.get("authorization") == f"Bearer {TOKEN}"

    target.unlink()
    assert "sha256 verified" in run_node(download).ui.as_dict()["text"][0]
    assert target.read_bytes() == PAYLOAD


def test_file_without_a_published_sha256_is_refused_unless_allowed(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.hide_sha256 = True
    with pytest.raises(download.ModelDownloadError) as raised:
        run_node(download)
    assert "no sha256" in str(raised.value) and "DYNAMICRAFTER_ALLOW_UNVERIFIED_DOWNLOADS=1" in str(raised.value)
    assert not hub.gets()

    monkeypatch.setenv("DYNAMICRAFTER_ALLOW_UNVERIFIED_DOWNLOADS", "1")
    result = run_node(download)
    assert "not verified" in result.ui.as_dict()["text"][0]
    assert (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").read_bytes() == PAYLOAD
