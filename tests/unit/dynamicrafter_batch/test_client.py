"""The API batch client (dynamicrafter_batch/client.py) without a server: workflow editing by input name and
class_type, items and their prompt ids, CSV rows, the journal, servers files, the dry run, the progress line
and complete-file checks. ``tests/host/dynamicrafter_batch/test_client.py`` runs it against a real server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import av
import numpy as np
import pytest

from dynamicrafter_batch import client as bc
from dynamicrafter_batch import graph as batch_graph
from dynamicrafter_batch import items as batch_items
from dynamicrafter_batch import journal as batch_journal
from dynamicrafter_batch import outputs as batch_outputs
from dynamicrafter_batch import progress as batch_progress
from dynamicrafter_batch import servers as batch_servers
from support.batch_server import BATCH
from support.batch_videos import picture

ROOT = Path(__file__).resolve().parents[3]


def renumbered(graph: dict, offset: int = 40) -> dict:
    """The same graph under other node ids: nothing may depend on the ids."""
    ids = {old: str(int(old) + offset) for old in graph}
    out = {}
    for old, node in graph.items():
        inputs = {k: [ids[v[0]], v[1]] if batch_graph.is_link(v) else v for k, v in node["inputs"].items()}
        out[ids[old]] = {**node, "inputs": inputs}
    return out


def test_values_are_set_by_input_name_not_node_id(tmp_path):
    name, shipped = batch_items.WorkflowSource("image_to_video").get("512")
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(renumbered(shipped)))
    item = batch_items.Item(
        row=1, image=picture(tmp_path / "p.png"), prompt="waves", values={"seed": "7", "fs": "10", "steps": "2"}
    )
    settings = batch_items.Settings(
        workflow=str(workflow), values={"ckpt_name": "demo.ckpt", "width": 128, "height": 64, "frames": 8}
    )
    job = batch_items.prepare(item, settings, batch_items.WorkflowSource(str(workflow)))
    assert job.error is None, job.error
    by_class = {node["class_type"]: node["inputs"] for node in job.graph.values()}
    assert by_class["LoadImage"]["image"] == job.upload_name
    assert by_class["DynamiCrafterCheckpointLoader"]["ckpt_name"] == "demo.ckpt"
    conditioning = by_class["DynamiCrafterImageToVideo"]
    sizes = (conditioning["width"], conditioning["height"], conditioning["frames"], conditioning["fs"])
    assert sizes == (128, 64, 8, 10)
    assert (by_class["DynamiCrafterSampler"]["seed"], by_class["DynamiCrafterSampler"]["steps"]) == (7, 2)
    positive = job.graph[conditioning["positive"][0]]["inputs"]["text"]
    negative = job.graph[conditioning["negative"][0]]["inputs"]["text"]
    assert positive == "waves" and negative != "waves"
    job.bind("secret")
    assert list(job.prefixes.values()) == [f"{batch_items.DEFAULT_PREFIX}/{uuid.UUID(job.prompt_id).hex[:20]}"]
    assert by_class["LoadImage"]["image"] == job.upload_name != f"dcbatch_{job.upload.sha256[:20]}.png"


def _literal_inputs(graph: dict) -> set[str]:
    return {name for node in graph.values() for name, value in node["inputs"].items() if not isinstance(value, list)}


def test_the_default_workflow_is_the_shipped_file_and_its_inputs_are_the_fields(capsys):
    shipped = json.loads((ROOT / "workflows" / "api" / "image_to_video_512.json").read_text())
    where, graph = batch_items.WorkflowSource(batch_graph.DEFAULT_WORKFLOW).get(None)
    assert Path(where).name == "image_to_video_512.json" and graph == shipped
    offered = batch_graph.fields(graph)
    assert set(offered) == _literal_inputs(shipped) - set(batch_graph.CLIENT_INPUTS)
    assert offered["fs"] == 24 and offered["seed"] == 123  # the file's values, not the client's
    with pytest.raises(SystemExit):
        bc.parse_args(["--help"])
    usage = capsys.readouterr().out
    for name in offered:
        assert bc.option_name(name) + " " in usage, name


def test_a_renamed_node_input_reaches_the_client_through_the_workflow(tmp_path, monkeypatch, capsys):
    """A node input renamed in the node's file shows up in the regenerated workflow; the client reads it there."""
    text = (ROOT / "workflows" / "api" / "image_to_video_512.json").read_text().replace('"fs":', '"motion_fps":')
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "image_to_video_512.json").write_text(text)
    monkeypatch.setenv("DYNAMICRAFTER_WORKFLOWS", str(tmp_path))
    _, graph = batch_items.WorkflowSource("image_to_video").get(None)
    assert "motion_fps" in batch_graph.fields(graph) and "fs" not in batch_graph.fields(graph)
    args, values = bc.parse_args(["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--motion-fps", "9"])
    assert values == {"motion_fps": "9"}
    job = batch_items.prepare(
        batch_items.Item(1, picture(tmp_path / "p.png")),
        batch_items.Settings(values=values),
        batch_items.WorkflowSource("image_to_video"),
    )
    assert job.error is None and [
        n["inputs"]["motion_fps"] for n in job.graph.values() if "motion_fps" in n["inputs"]
    ] == [9]
    with pytest.raises(SystemExit):
        bc.parse_args(["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--fs", "9"])
    assert "--fs" in capsys.readouterr().err


def test_field_values_take_the_workflows_types():
    graph = json.loads((ROOT / "workflows" / "api" / "image_to_video_512.json").read_text())
    for name, raw, message in (
        ("seed", "x", "whole number"),
        ("cfg", "nan", "finite number"),
        ("nothing_like_it", "1", "no node that takes 'nothing_like_it'"),
    ):
        with pytest.raises(batch_graph.WorkflowError, match=message):
            batch_graph.set_field(graph, name, raw)
    batch_graph.set_field(graph, "cfg", "5")
    assert [n["inputs"]["cfg"] for n in graph.values() if "cfg" in n["inputs"]] == [5.0]


def test_prompt_id_is_deterministic_per_item_and_secret(tmp_path):
    image = picture(tmp_path / "p.png")
    source = batch_items.WorkflowSource("image_to_video")
    settings = batch_items.Settings()

    def bound(item: batch_items.Item, secret: str = "journal secret") -> batch_items.Job:
        job = batch_items.prepare(item, settings, source)
        job.bind(secret)
        return job

    first = bound(batch_items.Item(1, image, "waves", {"seed": "1"}))
    again = bound(batch_items.Item(5, image, "waves", {"seed": "1"}))
    other = bound(batch_items.Item(1, image, "waves", {"seed": "2"}))
    assert first.prompt_id == again.prompt_id != other.prompt_id
    # Another journal (another user with the same picture and prompt) cannot predict the ids or names.
    stranger = bound(batch_items.Item(1, image, "waves", {"seed": "1"}), secret="another journal")
    assert stranger.key == first.key
    assert stranger.prompt_id != first.prompt_id and stranger.upload_name != first.upload_name
    assert stranger.prefixes != first.prefixes
    assert first.key[:20] not in json.dumps(first.graph) + first.prompt_id.replace("-", "")
    picture(image, colour=(10, 200, 10))  # same name, new content: a new item
    assert bound(batch_items.Item(1, image, "waves", {"seed": "1"})).prompt_id != first.prompt_id


def test_journal_keeps_its_secret_and_the_last_id_of_each_item(tmp_path):
    path = tmp_path / batch_journal.JOURNAL_NAME
    journal = batch_journal.Journal(path)
    secret = journal.secret()
    assert len(secret) == 64 and journal.secret() == secret
    assert journal.prompt_id("k") is None
    journal.write("submitted", item="k", prompt_id="6f9619ff-8b86-d011-b42d-00c04fc964ff")
    journal.write("reissued", item="k", prompt_id="not an id")  # a damaged record is passed over
    journal.close()
    resumed = batch_journal.Journal(path)
    assert resumed.secret() == secret and resumed.prompt_id("k") == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    resumed.close()
    assert batch_journal.Journal(tmp_path / "other" / batch_journal.JOURNAL_NAME).secret() != secret


def test_only_the_items_own_graph_is_taken_from_the_history():
    graph = {"1": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "x/abc", "fps": 8.0}}}
    planted = {"1": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "x/abc", "fps": 9.0}}}
    assert batch_outputs.is_own({"prompt": [0, "id", json.loads(json.dumps(graph)), {}, ["1"]]}, graph)
    assert not batch_outputs.is_own({"prompt": [0, "id", planted, {}, ["1"]]}, graph)
    assert not batch_outputs.is_own({"outputs": {}}, graph)


def test_shipped_api_workflow_is_found_by_name_and_variant(tmp_path):
    (tmp_path / "api").mkdir()
    ui = {"nodes": [], "links": [], "version": 0.4}
    (tmp_path / "image_to_video_1024.json").write_text(json.dumps(ui))
    shipped = (ROOT / "workflows" / "api" / "image_to_video_512.json").read_text()
    (tmp_path / "api" / "image_to_video_1024.json").write_text(shipped)
    found = batch_graph.find_workflow("image_to_video", "1024", dirs=[tmp_path])
    assert found == tmp_path / "api" / "image_to_video_1024.json"
    assert batch_graph.find_workflow("interpolation", "1024", dirs=[tmp_path]) is None
    with pytest.raises(batch_graph.WorkflowError, match="Export \\(API\\)"):
        batch_graph.load_workflow(tmp_path / "image_to_video_1024.json")


def test_workflow_without_the_node_for_a_setting_is_an_item_error(tmp_path):
    graph = json.loads((ROOT / "workflows" / "api" / "image_to_video_512.json").read_text())
    for node in graph.values():
        node["inputs"].pop("steps", None)
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(graph))
    source = batch_items.WorkflowSource(str(path))
    item = batch_items.Item(1, picture(tmp_path / "p.png"), "x")
    job = batch_items.prepare(item, batch_items.Settings(workflow=str(path), values={"steps": 3}), source)
    assert "no node that takes 'steps'" in job.error
    item = batch_items.Item(1, item.image, "x", {"steps": "3", "notes": "a CSV column of no node"})
    job = batch_items.prepare(item, batch_items.Settings(workflow=str(path)), source)
    assert job.error is None and "notes" not in json.dumps(job.graph), "CSV columns of no input are ignored"


def test_csv_rows(tmp_path):
    picture(tmp_path / "a.png")
    (tmp_path / "batch.csv").write_text(
        "image,prompt,seed,fs,variant,steps\na.png,waves,3,,,\nmissing.png,clouds,,,,\na.png,,x,,,\n"
    )
    items = batch_items.items_from_csv(tmp_path / "batch.csv", default_prompt="default")
    assert [(i.row, i.image.name, i.prompt, i.values) for i in items] == [
        (2, "a.png", "waves", {"seed": "3"}),
        (3, "missing.png", "clouds", {}),
        (4, "a.png", "default", {"seed": "x"}),
    ]
    jobs = batch_items.build_jobs(items, batch_items.Settings())
    assert jobs[0].error is None
    assert "image not found" in jobs[1].error
    assert "not a whole number" in jobs[2].error


@pytest.mark.parametrize("torn", ['{"event": "done", "item": "de', '{"event": "done", "item": "de", "files": []}'])
def test_journal_repairs_a_record_cut_mid_write(tmp_path, torn):
    path = tmp_path / batch_journal.JOURNAL_NAME
    journal = batch_journal.Journal(path)
    client = journal.client_id()
    journal.write("done", item="abc", files=["x.mp4"])
    journal.close()
    with open(path, "a") as f:
        f.write(torn)  # killed mid-write: no newline, maybe not even whole JSON
    again = batch_journal.Journal(path)
    assert again.client_id() == client and again.last("abc")["files"] == ["x.mp4"]
    whole = torn.endswith("}")
    assert (again.last("de") is not None) == whole
    again.write("submitted", item="next", server="http://a")
    again.close()
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines), "no record was appended onto the torn one"
    resumed = batch_journal.Journal(path)
    assert resumed.home("next") == "http://a" and resumed.last("abc")["files"] == ["x.mp4"]
    assert len(resumed.records) == 3 + whole
    with pytest.raises(batch_journal.JournalBusy):
        batch_journal.Journal(path)  # a second client on the same folder while one runs
    resumed.close()


def test_journal_says_where_an_item_went(tmp_path):
    journal = batch_journal.Journal(tmp_path / batch_journal.JOURNAL_NAME)
    assert journal.home("k") is None
    journal.write("submitted", item="k", prompt_id="p")  # a single-server journal of an earlier version
    assert journal.home("k") == ""
    journal.write("claimed", item="k", server="http://b")
    assert journal.home("k") == "http://b"
    journal.write("attempt_failed", item="k", server="http://b", error="boom")  # an earlier version's retry
    assert journal.home("k") is None
    journal.write("claimed", item="k", server="worker-1")
    assert journal.home("k") == "worker-1"
    journal.write("released", item="k", server="worker-1")
    assert journal.home("k") is None
    journal.write("done", item="k", files=["k.mp4"])
    assert journal.home("k") is None
    journal.close()


def test_servers_file_and_headers_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU2_TOKEN", "s3cret-token")
    listing = tmp_path / "servers.txt"
    listing.write_text(
        "# three GPUs\nhttp://gpu1:8188\n"
        "https://user:pw@gpu2.example.com concurrency=4 header.Authorization='Bearer ${GPU2_TOKEN}'\n"
        "http://gpu1:8188/\n"
    )
    specs = batch_servers.server_specs(["http://local:8188"], listing, 2, {"X-Key": "other-secret"})
    assert [(s.url, s.concurrency) for s in specs] == [
        ("http://local:8188", 2),
        ("http://gpu1:8188", 2),
        ("https://user:pw@gpu2.example.com", 4),
    ]
    assert specs[2].headers == {"Authorization": "Bearer s3cret-token"}
    assert specs[0].headers == {"X-Key": "other-secret"}
    shown = repr(specs) + " ".join(s.name for s in specs)
    assert "s3cret" not in shown and "other-secret" not in shown and "pw@" not in shown
    listing.write_text("http://gpu3:8188 header.Authorization=${MISSING_TOKEN}\n")
    with pytest.raises(batch_servers.ServerListError, match="MISSING_TOKEN is not set"):
        batch_servers.server_specs([], listing, 2)
    listing.write_text("gpu3:8188\n")
    with pytest.raises(batch_servers.ServerListError, match="not a server address"):
        batch_servers.server_specs([], listing, 2)


def test_dry_run_lists_what_goes_where(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for n in range(5):
        picture(folder / f"p{n}.png", (40 * n, 100, 100))
    out = tmp_path / "out"
    args = [
        "--images",
        str(folder),
        "--out",
        str(out),
        "--server",
        "http://a:1",
        "--server",
        "http://b:2",
        "--width",
        "64",
        "--height",
        "64",
    ]
    _, values = bc.parse_args(args)
    jobs = batch_items.build_jobs(batch_items.items_from_folder(folder), batch_items.Settings(values=values))
    journal = batch_journal.Journal(out / batch_journal.JOURNAL_NAME)
    journal.write("done", item=jobs[0].key, files=["p0.mp4"])
    journal.write("claimed", item=jobs[1].key, server="http://b:2")
    journal.close()
    before = (out / batch_journal.JOURNAL_NAME).read_bytes()
    result = subprocess.run([*BATCH, *args, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    plans = [line.split("image_to_video_512.json", 1)[1].strip() for line in result.stdout.splitlines()]
    assert plans[0] == "done in an earlier run" and plans[1].startswith("looked for on http://b:2")
    assert [p.split()[2] for p in plans[2:]] == ["http://a:1", "http://a:1", "http://b:2"]
    assert (out / batch_journal.JOURNAL_NAME).read_bytes() == before, "a dry run writes nothing"


def test_progress_line_across_servers():
    progress = batch_progress.Progress(10, stream=io.StringIO())
    for name in ("http://a:1", "http://b:2"):
        progress.server(name)
    for _ in range(3):
        progress.started("http://a:1")
    progress.started("http://b:2")
    start = progress.servers["http://a:1"].busy_since
    progress.servers["http://b:2"].busy_since = start
    for outcome in ("done", "done"):
        progress.stopped("http://a:1", outcome)
        progress.finished(True)
    progress.stopped("http://b:2", "failed")
    progress.finished(False)
    progress.servers["http://b:2"].state = "gone"
    line = progress.status(now=start + 60.0)
    # 2 of 10 done in a minute on a (b is gone and counts no more): 7 left at 2/min.
    assert line == "2/10 done, 1 running, 1 failed | a:1 1 run 2.0/min | b:2 GONE 0 run 0.0/min | ETA 3m30s"


def test_complete_mp4_is_told_from_a_truncated_one(tmp_path):
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = path.read_bytes()
    assert batch_outputs.is_complete(data, "mp4")
    assert not batch_outputs.is_complete(data[: len(data) // 2], "mp4")
    assert not batch_outputs.is_complete(b"", "mp4")


def test_several_servers_without_ray_say_how_to_install_it(tmp_path):
    """More than one server is the cluster engine's job; without Ray the client says how to get it and does
    nothing (a ``ray`` package that cannot be imported stands for a machine without Ray)."""
    missing = tmp_path / "no-ray" / "ray"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    folder = tmp_path / "pictures"
    folder.mkdir()
    picture(folder / "p.png")
    command = [*BATCH, "--images", str(folder), "--out", str(tmp_path / "out"), "--server", "http://127.0.0.1:9"]
    command += ["--server", "http://127.0.0.1:10", "--width", "64", "--height", "64"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(missing.parent), str(ROOT), str(ROOT / "tests")])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'pip install "ray[default]>=2.9"' in result.stderr and "with one server, give one --server" in result.stderr
    assert not (tmp_path / "out").exists(), "nothing was started"
