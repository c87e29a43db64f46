"""The CIL ("no watermark") DynamiCrafter checkpoints load as what they are.

Their key layout is the DynamiCrafter one (tests/parity/test_parity_cil.py checks the reference model's full-size
keys and shapes against the manifests used here); what differs is how the files are named and packed: Kijai's
pruned fp16 copies (UNet, VAE and Resampler, as his other pruned files: his wrapper decodes with the file's VAE and
drops only the CLIP keys), and the reference's Lightning or DeepSpeed checkpoints (``timenoise.ckpt`` in its scripts).
"""

from __future__ import annotations

import json

import pytest
import torch

from dynamicrafter.checkpoint import PART_PREFIXES, checkpoint_from_state_dict, load_checkpoint
from support.reference_data import manifest_path
from support.tiny_checkpoints import TINY_UNET, full_state_dict, write_fp16_pruned, write_original_ckpt

KIJAI_CIL = {
    "dynamicrafter-CIL-512-no-watermark-fixed-pruned-fp16.safetensors": "512",
    "dynamicrafter-CIL-1024-no-watermark-pruned-fp16.safetensors": "1024",
}


@pytest.mark.parametrize(("name", "variant"), KIJAI_CIL.items())
def test_kijai_pruned_cil_files_load_as_their_resolution(tmp_path, name, variant):
    path = write_fp16_pruned(tmp_path / name, variant, manifest_path(variant))
    ckpt = load_checkpoint(path)
    assert ckpt.variant.name == variant
    assert ckpt.variant.schedule.base_scale == {"512": 0.7, "1024": 0.3}[variant]
    assert ckpt.unet_config.model_channels == TINY_UNET.model_channels
    assert ckpt.has("vae") and ckpt.has("resampler")
    assert not ckpt.has("text_encoder") and not ckpt.has("clip_vision")
    assert next(iter(ckpt.require("unet").values())).dtype == torch.float16


@pytest.mark.parametrize(("name", "variant"), KIJAI_CIL.items())
def test_full_size_cil_layout_is_detected(name, variant):
    """The full-size key layout (meta tensors, no weights) under Kijai's names, pruned as he prunes."""
    keys = json.loads(manifest_path(variant).read_text())["keys"]
    kept = tuple(PART_PREFIXES[p] for p in ("unet", "vae", "resampler"))
    sd = {k: torch.empty(s, dtype=torch.float16, device="meta") for k, s in keys.items() if k.startswith(kept)}
    ckpt = checkpoint_from_state_dict(name, sd)
    assert ckpt.variant.name == variant
    assert (ckpt.unet_config.model_channels, ckpt.unet_config.context_dim) == (320, 1024)
    assert ckpt.resampler_config.num_queries == 16


@pytest.mark.parametrize("variant", ["512", "1024"])
def test_reference_training_checkpoint_named_timenoise_is_told_apart_by_its_schedule(tmp_path, variant):
    """The reference scripts call the file ``timenoise.ckpt``: no resolution in the name, so the stored
    dynamic-rescale schedule (base scale 0.7 / 0.3) tells 512 from 1024."""
    path = write_original_ckpt(tmp_path / "timenoise.ckpt", variant, manifest_path(variant))
    ckpt = load_checkpoint(path)
    assert ckpt.variant.schedule.base_scale == {"512": 0.7, "1024": 0.3}[variant]
    assert ckpt.has("text_encoder") and ckpt.has("clip_vision")


def test_deepspeed_checkpoint_as_the_reference_loader_reads_it(tmp_path):
    """The reference's load_model_checkpoint also takes DeepSpeed files: ``module`` with ``_forward_module.``."""
    sd = full_state_dict("512", manifest_path("512"))
    path = tmp_path / "timenoise.ckpt"
    torch.save({"module": {f"_forward_module.{k}": v for k, v in sd.items()}}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.variant.name == "512"
    assert set(ckpt.require("unet")) == set(
        load_checkpoint(write_original_ckpt(tmp_path / "o.ckpt", "512", manifest_path("512"))).require("unet")
    )
