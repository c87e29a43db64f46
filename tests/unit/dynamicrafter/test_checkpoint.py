"""Loading every real file layout, config detection on full-size shapes, and bad files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import CheckpointError, MissingPartError, checkpoint_from_state_dict, load_checkpoint
from dynamicrafter.resampler import Resampler
from dynamicrafter.unet import DynamiCrafterUNet
from support.reference_data import manifest_path
from support.tiny_checkpoints import (
    TINY_RESAMPLER,
    TINY_UNET,
    tiny_unet_state_dict,
    write_bf16_safetensors,
    write_fp16_pruned,
    write_original_ckpt,
)

WRITERS = {
    "model.ckpt": write_original_ckpt,
    "dynamicrafter_{v}_v1_bf16.safetensors": write_bf16_safetensors,
    "dynamicrafter_{v}_fp16_pruned.safetensors": write_fp16_pruned,
}


def _manifest(variant):
    return manifest_path(variant)


# Every released layout of every variant (no fp16-pruned file was ever published for 256).
CASES = [
    (v, layout)
    for v in ("256", "512", "1024", "512_interp")
    for layout in WRITERS
    if not (v == "256" and "pruned" in layout)
]


@pytest.mark.parametrize(("variant", "layout"), CASES)
def test_round_trip_every_layout(tmp_path, variant, layout):
    path = WRITERS[layout](tmp_path / layout.format(v=variant), variant, _manifest(variant))
    ckpt = load_checkpoint(path, variant if layout == "model.ckpt" else None)
    assert ckpt.variant.name == variant
    assert ckpt.unet_config.model_channels == TINY_UNET.model_channels
    assert ckpt.unet_config.image_cross_attention_scale_learnable == (variant == "256")
    assert ckpt.resampler_config == TINY_RESAMPLER
    unet = DynamiCrafterUNet(ckpt.unet_config)
    unet.load_state_dict(ckpt.require("unet"), strict=True)
    expected = tiny_unet_state_dict(variant)
    fs_key = "framestride_embed.0.weight" if variant == "256" else "fps_embedding.0.weight"
    stored = ckpt.require("unet")["fps_embedding.0.weight"]
    torch.testing.assert_close(stored.float(), expected[fs_key].to(stored.dtype).float())
    Resampler(ckpt.resampler_config).load_state_dict(ckpt.require("resampler"), strict=True)
    assert ckpt.has("vae")
    if "pruned" in layout:
        assert not ckpt.has("text_encoder") and not ckpt.has("clip_vision")
    else:
        assert ckpt.require("text_encoder") and ckpt.require("clip_vision")


def test_pruned_file_asked_for_clip_names_the_stock_files(tmp_path):
    path = write_fp16_pruned(tmp_path / "dynamicrafter_512_fp16_pruned.safetensors", "512", _manifest("512"))
    ckpt = load_checkpoint(path)
    with pytest.raises(MissingPartError) as err:
        ckpt.require("text_encoder")
    assert "dynamicrafter_512_fp16_pruned.safetensors" in str(err.value) and "Load CLIP" in str(err.value)
    with pytest.raises(MissingPartError) as err:
        ckpt.require("clip_vision")
    assert "CLIP-ViT-H-14-laion2B-s32B-b79K" in str(err.value)


@pytest.mark.parametrize("variant", ["256", "512", "1024", "512_interp"])
def test_config_detection_on_full_size_shapes(variant):
    manifest = json.loads(_manifest(variant).read_text())
    sd = {k: torch.empty(s, device="meta") for k, s in manifest["keys"].items()}
    ckpt = checkpoint_from_state_dict(f"dynamicrafter_{variant}_v1/model.ckpt", sd, variant)
    c = ckpt.unet_config
    assert (c.model_channels, c.channel_mult, c.num_res_blocks, c.attention_resolutions) == (
        320,
        (1, 2, 4, 4),
        2,
        (4, 2, 1),
    )
    assert (c.num_head_channels, c.context_dim, c.in_channels, c.out_channels) == (64, 1024, 8, 4)
    assert c.image_cross_attention_scale_learnable == (variant == "256")
    r = ckpt.resampler_config
    assert (r.dim, r.depth, r.heads, r.num_queries, r.embedding_dim, r.output_dim) == (1024, 4, 12, 16, 1280, 1024)
    assert ckpt.variant.schedule.prediction == ("eps" if variant == "256" else "v")


def test_variant_from_file_name_and_scale_arr(tmp_path):
    manifest = _manifest("1024")
    ckpt = load_checkpoint(
        write_bf16_safetensors(tmp_path / "dynamicrafter_1024_v1_bf16.safetensors", "1024", manifest)
    )
    assert ckpt.variant.name == "1024" and ckpt.variant.schedule.base_scale == 0.3
    # A 1024 file under a neutral name is still recognised by its scale_arr (base scale 0.3).
    neutral = write_original_ckpt(tmp_path / "model.ckpt", "1024", manifest)
    assert load_checkpoint(neutral).variant.name == "1024"
    # The user's choice of 512 keeps the file's own base scale.
    assert load_checkpoint(neutral, "512").variant.schedule.base_scale == 0.3


def test_wrong_variant_choice_is_refused(tmp_path):
    path = write_original_ckpt(tmp_path / "model.ckpt", "256", _manifest("256"))
    with pytest.raises(CheckpointError, match="this is the 256 model"):
        load_checkpoint(path, "512")
    path = write_original_ckpt(tmp_path / "model512.ckpt", "512", _manifest("512"))
    with pytest.raises(CheckpointError, match="variant '256' was chosen"):
        load_checkpoint(path, "256")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_marker",))


def test_code_executing_pickle_is_refused_and_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt: refused to load: the pickle asks to run code"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned_marker").exists()


def test_plain_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned_marker").exists()


def test_truncated_safetensors(tmp_path):
    path = write_fp16_pruned(tmp_path / "cut.safetensors", "512", _manifest("512"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors: a safetensors file, but truncated or corrupt"):
        load_checkpoint(path)


def test_truncated_ckpt(tmp_path):
    path = write_original_ckpt(tmp_path / "cut.ckpt", "512", _manifest("512"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.ckpt: a PyTorch checkpoint \(zip\), but truncated or corrupt"):
        load_checkpoint(path)


def test_sd15_checkpoint_is_named(tmp_path):
    sd = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 768),
        "first_stage_model.decoder.conv_in.weight": torch.zeros(512, 4, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(10, 768),
    }
    path = tmp_path / "v1-5-pruned-emaonly.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith("v1-5-pruned-emaonly.safetensors: not a DynamiCrafter checkpoint")
    assert "Stable Diffusion 1.x/2.x" in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.safetensors: no such file"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_incomplete_unet_names_the_missing_key(tmp_path):
    path = write_fp16_pruned(tmp_path / "dc.safetensors", "512", _manifest("512"))
    from safetensors.torch import load_file

    sd = load_file(str(path))
    del sd["model.diffusion_model.out.2.weight"]
    with pytest.raises(CheckpointError, match="missing key 'out.2.weight'"):
        checkpoint_from_state_dict(path, sd)
