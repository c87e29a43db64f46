"""Which local files the batch client uploads (dynamicrafter_batch/files.py): pictures inside the batch's folder
tree only. ``tests/host/dynamicrafter_batch/test_client_security.py`` runs the client against a real server with the same files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynamicrafter_batch import files as batch_files
from dynamicrafter_batch import items as batch_items
from support.batch_videos import picture  # noqa: E402


@pytest.fixture
def tree(tmp_path):
    """A batch folder with a picture, a folder beside it with a secret picture and a secret text."""
    batch = tmp_path / "batch"
    (batch / "sub").mkdir(parents=True)
    picture(batch / "sub" / "ok.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    picture(elsewhere / "secret.png", (10, 10, 200))
    (elsewhere / "secret.txt").write_text("password=hunter2")
    (batch / "link.png").symlink_to(elsewhere / "secret.png")
    (batch / "inner.png").symlink_to(batch / "sub" / "ok.png")
    return batch, elsewhere


def test_pictures_in_the_tree_are_uploaded_links_out_of_it_are_not(tree):
    batch, elsewhere = tree
    ok = batch_files.check_picture(batch / "sub" / "ok.png", batch)
    assert ok.size == (batch / "sub" / "ok.png").stat().st_size and len(ok.sha256) == 64
    assert batch_files.check_picture(batch / "inner.png", batch).sha256 == ok.sha256, "a link inside the tree is fine"
    for path in (batch / "link.png", batch / ".." / "elsewhere" / "secret.png", elsewhere / "secret.png"):
        with pytest.raises(batch_files.LocalFileError, match="outside the batch's folder.*--allow-files-outside"):
            batch_files.check_picture(path, batch)
    assert batch_files.check_picture(batch / "link.png", None).sha256 != ok.sha256, "the user's flag allows it"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "not a picture"),
        ("/proc/self/environ", "empty"),
        ("/dev/zero", "not a regular file"),
        ("/dev/null", "not a regular file"),
    ],
)
def test_system_files_are_never_uploaded_even_when_files_elsewhere_are_allowed(path, why):
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing on this machine: the test needs a Linux system file")
    with pytest.raises(batch_files.LocalFileError, match=why):
        batch_files.check_picture(Path(path), None)


def test_fifos_and_folders_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening a FIFO for reading blocks until a writer comes: never done
    (tmp_path / "folder.png").mkdir()
    for name in ("pipe.png", "folder.png"):
        with pytest.raises(batch_files.LocalFileError, match="not a regular file"):
            batch_files.check_picture(tmp_path / name, tmp_path)


def test_a_picture_swapped_after_the_check_is_not_streamed(tmp_path):
    upload = batch_files.check_picture(picture(tmp_path / "a.png"), tmp_path)
    with upload.open() as f:
        assert len(f.read()) == upload.size
    (tmp_path / "a.png").write_bytes(b"x" * (upload.size + 5))
    with pytest.raises(batch_files.LocalFileError, match="changed since it was checked"):
        upload.open()


def test_a_csv_naming_outside_files_gives_failed_items_and_no_upload(tree):
    batch, elsewhere = tree
    (batch / "batch.csv").write_text(
        "image,prompt\nsub/ok.png,waves\n/etc/passwd,x\n../elsewhere/secret.png,x\nlink.png,x\n/proc/self/environ,x\n"
    )
    jobs = batch_items.build_jobs(batch_items.items_from_csv(batch / "batch.csv"), batch_items.Settings())
    assert jobs[0].error is None and jobs[0].upload.path == (batch / "sub" / "ok.png").resolve()
    for job in jobs[1:]:
        assert job.upload is None and "outside the batch's folder" in job.error, job.item.image


def test_prompt_files_leading_out_of_the_folder_are_not_read(tree):
    batch, elsewhere = tree
    (batch / "sub" / "ok.txt").symlink_to(elsewhere / "secret.txt")
    items = batch_items.items_from_folder(batch / "sub", prompt="default")
    assert [i.prompt for i in items] == ["default"]
    assert [i.prompt for i in batch_items.items_from_folder(batch / "sub", "default", allow_outside=True)] == [
        "password=hunter2"
    ]
