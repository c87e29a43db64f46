"""Full-size structure: our networks built on the meta device have exactly the released keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from dynamicrafter.checkpoint import PART_PREFIXES, checkpoint_from_state_dict, split_parts
from dynamicrafter.resampler import Resampler
from dynamicrafter.unet import DynamiCrafterUNet
from support.reference_data import MANIFESTS as MANIFEST_DIR

MANIFESTS = sorted(MANIFEST_DIR.glob("dynamicrafter_*.json"))
UNET_PARAMS = 1_438_854_980  # the released files' UNet (tests/data/checkpoint_manifests, by_prefix); 256: +16 alphas
RESAMPLER_PARAMS = 48_787_456


def _meta_state_dict(manifest: dict) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in manifest["keys"].items()}


def test_all_four_manifests_present():
    assert {p.stem for p in MANIFESTS} == {f"dynamicrafter_{v}" for v in ("256", "512", "1024", "512_interp")}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_meta_model_has_manifest_keys_and_shapes(path):
    manifest = json.loads(path.read_text())
    variant = path.stem.removeprefix("dynamicrafter_")
    ckpt = checkpoint_from_state_dict(f"{path.stem}.safetensors", _meta_state_dict(manifest), variant)
    assert ckpt.variant.name == variant
    with torch.device("meta"):
        unet = DynamiCrafterUNet(ckpt.unet_config)
        resampler = Resampler(ckpt.resampler_config)
    expected_unet = {k: tuple(v.shape) for k, v in ckpt.require("unet").items()}
    assert {k: tuple(v.shape) for k, v in unet.state_dict().items()} == expected_unet
    assert {k: tuple(v.shape) for k, v in resampler.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ckpt.require("resampler").items()
    }
    alphas = 16 if variant == "256" else 0
    assert sum(p.numel() for p in unet.parameters()) == UNET_PARAMS + alphas
    assert sum(p.numel() for p in resampler.parameters()) == RESAMPLER_PARAMS
    assert manifest["by_prefix"]["model.diffusion_model."]["n_elements"] == UNET_PARAMS + alphas


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_every_manifest_key_lands_in_a_part(path):
    manifest = json.loads(path.read_text())
    parts, buffers = split_parts(_meta_state_dict(manifest))
    counted = sum(len(p) for p in parts.values()) + len(buffers)
    assert counted == manifest["n_keys"]
    assert set(parts) == set(PART_PREFIXES)
    assert set(buffers) == set(manifest["buffers_in_state_dict"]) | (
        {"scale_arr"} if "scale_arr" in manifest["keys"] else set()
    )
