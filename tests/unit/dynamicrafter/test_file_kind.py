"""Files that are not what their name says, or no model at all: loaded by what they are, or refused with an
error that names the file, says what it really is (from its first bytes) and what to do."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import CheckpointError, load_checkpoint, read_state_dict
from dynamicrafter.file_kind import sniff
from support.reference_data import manifest_path
from support.tiny_checkpoints import write_fp16_pruned, write_original_ckpt

TENSORS = {"model.diffusion_model.w": torch.arange(12.0).reshape(3, 4), "first_stage_model.b": torch.ones(2)}


def _manifest():
    return manifest_path("512")


def test_safetensors_named_ckpt_loads_as_safetensors(tmp_path, caplog):
    path = write_fp16_pruned(tmp_path / "dynamicrafter_512_fp16_pruned.ckpt", "512", _manifest())
    assert sniff(path) == "safetensors"
    with caplog.at_level(logging.WARNING):
        ckpt = load_checkpoint(path)
    assert ckpt.variant.name == "512" and ckpt.has("unet")
    assert "really a safetensors file" in caplog.text and "dynamicrafter_512_fp16_pruned.safetensors" in caplog.text


def test_torch_checkpoint_named_safetensors_loads_as_torch(tmp_path, caplog):
    path = write_original_ckpt(tmp_path / "dynamicrafter_512_v1.safetensors", "512", _manifest())
    assert sniff(path) == "torch_zip"
    with caplog.at_level(logging.WARNING):
        ckpt = load_checkpoint(path)
    assert ckpt.has("text_encoder") and "really a PyTorch checkpoint (zip)" in caplog.text


def test_legacy_pickle_checkpoint_loads(tmp_path):
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": TENSORS}, path, _use_new_zipfile_serialization=False)
    assert sniff(path) == "torch_pickle"
    loaded = read_state_dict(path)
    assert loaded.keys() == TENSORS.keys()
    torch.testing.assert_close(loaded["model.diffusion_model.w"], TENSORS["model.diffusion_model.w"])


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", ["empty (0 bytes)", "Download it again"]),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 10441517545\n",
            ["Git LFS pointer", "git lfs pull"],
        ),
        (
            b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>",
            ["web page (HTML)", "Download Model"],
        ),
        (b"\n  <html lang='en'><body>Sign in</body></html>", ["web page (HTML)"]),
        (json.dumps({"error": "Repository not found"}).encode(), ["JSON text", "error reply"]),
        (b"this is not a model\n", ["a text file"]),
        (bytes(range(200, 256)) * 4, ["neither a PyTorch checkpoint nor a safetensors file", "c8 c9 ca cb"]),
    ],
)
@pytest.mark.parametrize("name", ["dynamicrafter_512_v1.ckpt", "dynamicrafter_512_fp16_pruned.safetensors"])
def test_file_that_is_no_model_says_what_it_is(tmp_path, content, fragments, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"{name}: ")
    assert "mmap" not in message and "truncated" not in message
    for fragment in fragments:
        assert fragment in message


def test_code_refusal_is_not_confused_with_damage(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": TENSORS}, path)
    data = bytearray(path.read_bytes())
    start = data.index(b"\x80\x02}q")  # the pickled index inside the zip
    data[start + 2 : start + 10] = bytes.fromhex("334a7017250d3f60")  # opcodes torch cannot read
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as raised:
        read_state_dict(path)
    assert "model.ckpt: a PyTorch checkpoint (zip), but corrupt" in str(raised.value)
    assert "run code" not in str(raised.value)


def test_damaged_zips_always_give_a_checkpoint_error_naming_the_file(tmp_path):
    """Truncations and overwritten bytes anywhere (the pickled index included, where torch raises IndexError,
    UnicodeDecodeError or OSError): either the file still reads, or the error names it; nothing else escapes."""
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {f"model.diffusion_model.w{i}": torch.randn(16, 16) for i in range(4)}}, good)
    data = good.read_bytes()
    start = data.index(b"\x80\x02}q")
    rng = random.Random(0)
    damaged = [data[:cut] for cut in range(1, len(data), max(len(data) // 60, 1))]
    for offset in range(start, start + 400, 3):
        copy = bytearray(data)
        copy[offset : offset + 8] = rng.randbytes(8)
        damaged.append(bytes(copy))
    refused = 0
    for index, content in enumerate(damaged):
        path = tmp_path / f"bad{index}.ckpt"
        path.write_bytes(content)
        try:
            read_state_dict(path)
        except CheckpointError as error:
            assert str(error).startswith(f"bad{index}.ckpt: "), error
            assert "again" in str(error), error
            refused += 1
        path.unlink()
    assert refused > len(damaged) // 2


def test_damaged_safetensors_header_names_the_file(tmp_path):
    path = tmp_path / "dynamicrafter_512_fp16_pruned.safetensors"
    save_file(TENSORS, str(path))
    data = bytearray(path.read_bytes())
    data[10:14] = b"\xff\xfe\x00\x01"  # inside the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="a safetensors file, but truncated or corrupt"):
        read_state_dict(path)


class _Payload:
    """A pickle that runs a command when loaded (the marker file proves whether it ran)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("wrapped", [False, True])
def test_a_raw_pickle_that_asks_to_run_code_is_said_so(tmp_path, protocol, wrapped):
    import pickle

    marker = tmp_path / "ran"
    payload = _Payload(marker)
    path = tmp_path / "model.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": payload} if wrapped else payload, protocol=protocol))
    with pytest.raises(CheckpointError) as raised:
        read_state_dict(path)
    message = str(raised.value)
    assert "refused to load: the pickle asks to run code" in message and "system" in message, message
    assert "corrupt" not in message
    assert not marker.exists(), "the payload never runs"
