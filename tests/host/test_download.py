"""DynamiCrafterModelDownload against a local fake Hugging Face hub (127.0.0.1; huggingface.co is never contacted).

Checks: the node downloads into a temporary models folder registered with folder_paths and reports
progress through comfy.utils' progress hook; a connection cut half-way resumes with a Range request; a
cancelled download resumes with a Range request on the next run; a complete file is not downloaded again;
401/404/unreachable hub give clear errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_hf_server import FakeHub

pytestmark = pytest.mark.host

ORIGINAL_512 = "512 (original, full, 10.4 GB)"
KIJAI_1024 = "1024 (Kijai, bf16, full, 5.2 GB)"
PAYLOAD = random.Random(0).randbytes(3 * 2**20 + 12345)  # a few MB, not a multiple of the chunk size
CHUNK = 64 * 2**10
TOKEN = "hf_fake_token_for_tests"


@pytest.fixture(scope="module")
def download(comfy_host: Any) -> Any:
    module = comfy_host.import_pack_module("nodes.download")
    comfy_host.register(module.NODES)
    return module


@pytest.fixture
def models(comfy_host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Temporary checkpoints/ and diffusion_models/ folders, registered as ComfyUI's only model paths."""
    folder_paths = comfy_host.folder_paths
    folders = {}
    for kind in ("checkpoints", "diffusion_models"):
        folders[kind] = tmp_path / "models" / kind
        monkeypatch.setitem(
            folder_paths.folder_names_and_paths, kind, ([str(folders[kind])], set(folder_paths.supported_pt_extensions))
        )
    return folders


@pytest.fixture
def hub(download: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake hub serving the 512 original and Kijai's 1024 bf16 file; huggingface_hub pointed at it."""
    import huggingface_hub.constants

    fake = FakeHub()
    fake.add_file("Doubiiu/DynamiCrafter_512", "model.ckpt", PAYLOAD)
    fake.add_file("Kijai/DynamiCrafter_pruned", "dynamicrafter_1024_v1_bf16.safetensors", PAYLOAD[::-1])
    with fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)  # read by the node when it runs
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
        yield fake


class ProgressLog:
    """Captures comfy.utils.ProgressBar updates through the global hook; can press Cancel at a fraction."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.cancel_at: float | None = None

    def __call__(self, value: int, total: int, preview: Any, node_id: Any = None) -> None:
        self.calls.append((value, total))
        if self.cancel_at is not None and value >= self.cancel_at * total:
            import comfy.model_management

            comfy.model_management.interrupt_current_processing(True)
            self.cancel_at = None


@pytest.fixture
def progress(comfy_host: Any) -> Iterator[ProgressLog]:
    import comfy.model_management
    import comfy.utils

    previous = comfy.utils.PROGRESS_BAR_HOOK
    log = ProgressLog()
    comfy.utils.set_progress_bar_global_hook(log)
    yield log
    comfy.utils.set_progress_bar_global_hook(previous)
    comfy.model_management.interrupt_current_processing(False)


def run_node(download: Any, model: str = ORIGINAL_512, destination: str = "checkpoints") -> Any:
    return download.DynamiCrafterModelDownload.execute(model=model, destination=destination)


def no_partials(folder: Path) -> bool:
    return not list(folder.glob("*.incomplete"))


# ------------------------------------------------------------------------------------------------------


def test_schema(download: Any) -> None:
    from dynamicrafter.config import VARIANTS

    schema = download.DynamiCrafterModelDownload.GET_SCHEMA()
    assert schema.node_id == "DynamiCrafterModelDownload"
    assert schema.display_name == "DynamiCrafter Download Model"
    assert schema.category == "DynamiCrafter/loaders"
    assert schema.is_output_node is True
    assert [i.id for i in schema.inputs] == ["model", "destination"]
    assert all(i.tooltip for i in schema.inputs)
    assert [o.io_type for o in schema.outputs] == ["STRING"]
    model_input, destination_input = schema.inputs
    assert destination_input.options == ["checkpoints", "diffusion_models"]
    originals = {e.repo_id: e for e in download.CATALOGUE.values() if e.filename == "model.ckpt"}
    assert set(originals) == {v.hf_repo for v in VARIANTS.values()}
    for name, variant in VARIANTS.items():
        assert originals[variant.hf_repo].local_name == f"dynamicrafter_{name}_v1.ckpt"
    assert model_input.options == list(download.CATALOGUE)
    assert {f"{v} (original, full, 10.4 GB)" for v in VARIANTS} <= set(model_input.options)
    kijai = {e.filename for e in download.CATALOGUE.values() if e.repo_id == "Kijai/DynamiCrafter_pruned"}
    assert kijai == {
        "dynamicrafter_1024_v1_bf16.safetensors",
        "dynamicrafter_512_fp16_pruned.safetensors",
        "dynamicrafter_1024_fp16_pruned.safetensors",
        "dynamicrafter_512_interp_fp16_pruned.safetensors",
        "dynamicrafter-CIL-512-no-watermark-fixed-pruned-fp16.safetensors",
        "dynamicrafter-CIL-1024-no-watermark-pruned-fp16.safetensors",
    }


def test_downloads_through_the_executor_with_progress(
    comfy_host: Any, download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    prompt = {
        "1": {
            "class_type": "DynamiCrafterModelDownload",
            "inputs": {"model": ORIGINAL_512, "destination": "checkpoints"},
        }
    }
    run = comfy_host.run_prompt(prompt)

    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    assert run.output("1") == "dynamicrafter_512_v1.ckpt"
    assert target.read_bytes() == PAYLOAD
    assert no_partials(models["checkpoints"])
    assert "Downloaded dynamicrafter_512_v1.ckpt" in run.ui["1"]["text"][0]

    # progress: several updates, monotonic, against the file size, ending complete
    values = [value for value, _ in progress.calls]
    assert len(values) >= 10
    assert all(total == len(PAYLOAD) for _, total in progress.calls)
    assert values == sorted(values) and values[-1] == len(PAYLOAD)

    # the hub was asked (with the token) at the resolve URL; the CDN got no token and no Range
    heads = [r for r in hub.requests if r.server == "hub"]
    assert heads and heads[0].method == "HEAD"
    assert heads[0].path == "/Doubiiu/DynamiCrafter_512/resolve/main/model.ckpt"
    assert heads[0].headers.get("authorization") == f"Bearer {TOKEN}"
    gets = hub.gets()
    assert len(gets) == 1 and gets[0].range is None and "authorization" not in gets[0].headers


def test_keeps_kijai_name_and_diffusion_models_folder(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    result = run_node(download, KIJAI_1024, "diffusion_models")
    assert result.args == ("dynamicrafter_1024_v1_bf16.safetensors",)
    assert (models["diffusion_models"] / "dynamicrafter_1024_v1_bf16.safetensors").read_bytes() == PAYLOAD[::-1]
    assert not list(models["checkpoints"].glob("*"))


def test_connection_cut_half_way_resumes_with_range(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    half = len(PAYLOAD) // 2
    hub.drop_next_get_after(half)
    run_node(download)

    assert (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").read_bytes() == PAYLOAD
    gets = hub.gets()
    assert len(gets) == 2 and gets[0].range is None
    resumed_at = int(gets[1].range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= half
    assert no_partials(models["checkpoints"])


def test_cancelled_download_resumes_with_range_on_next_run(
    comfy_host: Any, download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    import comfy.model_management

    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    progress.cancel_at = 0.5  # the user presses Cancel half-way
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run_node(download)
    assert not target.exists()
    (partial,) = models["checkpoints"].glob("dynamicrafter_512_v1.ckpt.*.incomplete")
    kept = partial.stat().st_size
    assert len(PAYLOAD) // 2 <= kept < len(PAYLOAD)
    assert partial.read_bytes() == PAYLOAD[:kept]

    progress.calls.clear()
    result = run_node(download)  # the second run continues where the first stopped
    assert result.args == ("dynamicrafter_512_v1.ckpt",)
    assert target.read_bytes() == PAYLOAD
    assert no_partials(models["checkpoints"])
    gets = hub.gets()
    assert len(gets) == 2 and gets[0].range is None and gets[1].range == f"bytes={kept}-"
    assert progress.calls[0][0] >= kept and progress.calls[-1][0] == len(PAYLOAD)


def test_complete_file_is_not_downloaded_again(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    run_node(download)
    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    mtime = target.stat().st_mtime_ns
    assert len(hub.gets()) == 1

    result = run_node(download)
    assert result.args == ("dynamicrafter_512_v1.ckpt",)
    assert "already" in result.ui.as_dict()["text"][0]
    assert len(hub.gets()) == 1  # no second GET
    assert target.stat().st_mtime_ns == mtime

    # a different file under that name is reported, never overwritten
    target.write_bytes(b"not the checkpoint")
    with pytest.raises(download.ModelDownloadError, match="delete or rename"):
        run_node(download)
    assert target.read_bytes() == b"not the checkpoint"


def test_existing_file_is_used_when_the_hub_is_unreachable(
    download: Any, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, progress: ProgressLog
) -> None:
    models["checkpoints"].mkdir(parents=True)
    (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").write_bytes(PAYLOAD)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    result = run_node(download)
    assert result.args == ("dynamicrafter_512_v1.ckpt",)


def test_missing_file_404_names_repo_and_file(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    del hub.files[("Doubiiu/DynamiCrafter_512", "model.ckpt")]
    hub.add_file("Doubiiu/DynamiCrafter_512", "README.md", b"readme")
    with pytest.raises(download.ModelDownloadError) as raised:
        run_node(download)
    message = str(raised.value)
    assert "404" in message and "'model.ckpt'" in message and "'Doubiiu/DynamiCrafter_512'" in message
    assert str(models["checkpoints"]) in message and "dynamicrafter_512_v1.ckpt" in message
    assert not hub.gets()


def test_private_repo_401_says_so(download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog) -> None:
    hub.private_repos.add("Doubiiu/DynamiCrafter_512")
    with pytest.raises(download.ModelDownloadError) as raised:
        run_node(download)
    message = str(raised.value)
    assert "401" in message and "Doubiiu/DynamiCrafter_512" in message and "HF_TOKEN" in message


def test_unreachable_hub_names_url_and_folder(
    download: Any, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, progress: ProgressLog
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(download.ModelDownloadError) as raised:
        run_node(download)
    message = str(raised.value)
    assert f"{endpoint}/Doubiiu/DynamiCrafter_512/resolve/main/model.ckpt" in message
    assert "manually" in message and str(models["checkpoints"]) in message
    assert not (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------------------
# Integrity: sha256 against the hub, files verified once, partial files never through a link
# ------------------------------------------------------------------------------------------------------

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
    integrity = sys.modules[download.__name__.rsplit(".", 1)[0] + ".download_integrity"]
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
