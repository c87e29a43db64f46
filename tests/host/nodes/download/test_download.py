"""DynamiCrafterModelDownload against a local fake Hugging Face hub (127.0.0.1; huggingface.co is never contacted).

Checks: the node downloads into a temporary models folder registered with folder_paths and reports
progress through comfy.utils' progress hook; a connection cut half-way resumes with a Range request; a
cancelled download resumes with a Range request on the next run (when the admin keeps partial files); a complete file is not downloaded again;
401/404/unreachable hub give clear errors.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from support.download_parts import KIJAI_1024, ORIGINAL_512, PAYLOAD, TOKEN, ProgressLog, no_partials, run_node
from support.fake_hf_server import FakeHub

pytestmark = pytest.mark.host


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
    # Paced as over a network (about 1.5 s), so the host's throttled progress bar has updates to show.
    hub.body, hub.trickle_bytes, hub.trickle_s = "trickle", 64 << 10, 0.03
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
    comfy_host: Any,
    download: Any,
    models: dict[str, Path],
    hub: FakeHub,
    progress: ProgressLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import comfy.model_management

    monkeypatch.setenv("DYNAMICRAFTER_RESUME_DOWNLOADS", "1")  # the admin keeps partial files for a resume
    target = models["checkpoints"] / "dynamicrafter_512_v1.ckpt"
    progress.cancel_at = 0.5  # the user presses Cancel half-way
    hub.body, hub.trickle_bytes, hub.trickle_s = "trickle", 64 << 10, 0.01  # paced: Cancel comes mid-way
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run_node(download)
    assert not target.exists()
    (partial,) = models["checkpoints"].glob("dynamicrafter_512_v1.ckpt.*.incomplete")
    kept = partial.stat().st_size
    assert len(PAYLOAD) // 2 <= kept < len(PAYLOAD)
    assert partial.read_bytes() == PAYLOAD[:kept]

    progress.calls.clear()
    hub.body = "normal"
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
    monkeypatch.setenv("DYNAMICRAFTER_DOWNLOADS", "any")  # the node runs alone here
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
