"""The batch client against attacks, on a real headless ComfyUI: a CSV naming system files, ``../`` paths, a
link out of its folder and ``/proc/self/environ`` uploads none of them; a result planted under an item's
prompt id by another user is refused and the item rendered anew. ``tests/unit/dynamicrafter_batch/test_files.py`` checks
the file rules without a server."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from dynamicrafter_batch import client as batch_client
from dynamicrafter_batch import items as batch_items
from dynamicrafter_batch import journal as batch_journal
from support.batch_server import BATCH, TINY, TINY_CKPT, batch_server, get_json, post_json, server_dir  # noqa: E402
from support.batch_videos import picture  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models):
    yield from batch_server(tmp_path_factory.mktemp("batch-security-server"), tiny_models)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*BATCH, *args], capture_output=True, text=True, timeout=600)


def _uploaded(server) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in server_dir(server, "input").rglob("*") if p.is_file()}


def test_a_csv_naming_files_outside_its_folder_uploads_none_of_them(server, tmp_path):
    batch = tmp_path / "batch"
    batch.mkdir()
    picture(batch / "ok.png")
    (tmp_path / "secret.txt").write_text("SECRET_TOKEN=s3cr3t-value\n")
    (batch / "link.png").symlink_to("/etc/passwd")
    (batch / "link_up.png").symlink_to(tmp_path / "secret.txt")
    up_to_root = "../" * len(batch.parts) + "etc/passwd"  # however deep the temporary folder lies
    hostile = ["/etc/passwd", up_to_root, "../secret.txt", "link.png", "link_up.png"]
    hostile.append("/proc/self/environ")
    rows = "".join(f"{path},waves\n" for path in ["ok.png", *hostile])
    (batch / "batch.csv").write_text("image,prompt\n" + rows)
    before = _uploaded(server)
    out = tmp_path / "out"
    result = _run(["--csv", str(batch / "batch.csv"), "--out", str(out), "--server", server.url, *TINY_CKPT, *TINY])
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()  # the progress messages, in full
    for path in hostile:
        line = next(line for line in lines if line.startswith("failed") and path in line)
        assert "outside the batch's folder" in line and "--allow-files-outside" in line, line
    assert len(list(out.glob("*.mp4"))) == 1, "the one picture in the folder is rendered"
    new = {name: data for name, data in _uploaded(server).items() if before.get(name) != data}
    assert len(new) == 1 and list(new.values())[0] == (batch / "ok.png").read_bytes(), sorted(new)
    uploaded = b"".join(_uploaded(server).values())
    assert b"root:" not in uploaded and b"s3cr3t" not in uploaded and b"PATH=" not in uploaded
    assert "passwd" not in json.dumps(get_json(server, "/history")), "no hostile name reached the server"

    # Allowed by the user's flag, files elsewhere are still uploaded only when they are pictures.
    again = _run(
        [
            "--csv",
            str(batch / "batch.csv"),
            "--out",
            str(tmp_path / "out2"),
            "--server",
            server.url,
            "--allow-files-outside",
        ]
        + TINY_CKPT
        + TINY
    )
    assert again.returncode == 1
    failed = [line for line in again.stderr.splitlines() if line.startswith("failed")]
    assert sum("not a picture Pillow can open" in line for line in failed) == 5, failed
    assert sum("empty" in line for line in failed) == 1, failed  # /proc/self/environ has no size
    assert b"root:" not in b"".join(_uploaded(server).values())


def _victim_job(args: list[str], out: Path) -> batch_items.Job:
    """The job the victim's client will send, with the id it will use (read from its journal's secret)."""
    parsed, values = batch_client.parse_args(args)
    settings = batch_items.Settings(workflow=parsed.workflow, values=values, overrides=parsed.overrides)
    [job] = batch_items.build_jobs(batch_items.items_from_csv(parsed.csv, parsed.prompt), settings)
    journal = batch_journal.Journal(out / batch_journal.JOURNAL_NAME)
    job.bind(journal.secret())
    journal.close()
    return job


def _wait_finished(server, prompt_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = get_json(server, f"/history/{prompt_id}").get(prompt_id)
        if entry and (entry.get("status") or {}).get("completed") is not None:
            return entry
        time.sleep(0.2)
    raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s")


def _video_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def test_a_result_planted_under_the_items_id_is_refused_and_the_item_rendered_anew(server, tmp_path):
    picture(tmp_path / "photo.png")
    (tmp_path / "batch.csv").write_text("image,prompt\nphoto.png,waves crashing\n")
    out = tmp_path / "out"
    args = ["--csv", str(tmp_path / "batch.csv"), "--out", str(out), "--server", server.url, "--poll", "0.5"]
    args += TINY_CKPT + TINY
    victim = _victim_job(args, out)
    # The attacker knows the victim's id (the worst case: the ids are not predictable without the journal's
    # secret) and queues another graph under it first: another size, another prompt, its own picture.
    planted = json.loads(json.dumps(victim.graph))
    for node in planted.values():
        inputs = node["inputs"]
        if node["class_type"] == "CLIPTextEncode" and inputs.get("text") == "waves crashing":
            inputs["text"] = "EVIL"
        if "width" in inputs and "height" in inputs:
            inputs["width"], inputs["height"] = 64, 64
        if node["class_type"] == "LoadImage":
            inputs["image"] = "evil.png"
    picture(server_dir(server, "input") / "evil.png", (0, 0, 0))
    post_json(server, "/prompt", {"prompt": planted, "prompt_id": victim.prompt_id})
    assert _wait_finished(server, victim.prompt_id)["status"]["status_str"] == "success"

    result = _run(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "someone else's result under this id" in result.stderr
    [video] = out.glob("*.mp4")
    assert _video_size(video) == (128, 64), "the item's own video, not the planted 64x64 one"
    records = [json.loads(line) for line in (out / batch_journal.JOURNAL_NAME).read_text().splitlines()]
    [reissued] = [r for r in records if r["event"] == "reissued"]
    [done] = [r for r in records if r["event"] == "done"]
    assert reissued["was"] == victim.prompt_id and done["prompt_id"] == reissued["prompt_id"] != victim.prompt_id
    own = _wait_finished(server, done["prompt_id"])
    assert "EVIL" not in json.dumps(own["prompt"][2]) and str(uuid.UUID(done["prompt_id"])) == done["prompt_id"]
