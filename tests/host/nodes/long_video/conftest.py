"""Fixtures of the long-video host tests: the pack's long-video modules in the host, tiny 512 and 512_interp
models with a tiny VAE, CLIP vision stand-ins, and the original's small_512 parity network."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.checkpoint import checkpoint_from_state_dict
from support.long_video_parts import (
    TINY_VAE,
    FakeClipVision,
    as_image,
    conditioning,
    tiny_parts,
)
from support.parity_data import FixtureSet
from support.reference_data import PARITY_SMALL_512


@pytest.fixture(scope="module")
def pack(comfy_host):
    """The pack's modules, and the long-video nodes registered with the host."""
    modules = {
        name.rsplit(".", 1)[-1]: comfy_host.import_pack_module(f"nodes.{name}")
        for name in ("long_video", "conditioning", "adapter.family", "sampler", "adapter.patcher")
    }
    comfy_host.register(modules["long_video"].NODES)
    return modules


@pytest.fixture
def fake_clip(pack, monkeypatch) -> FakeClipVision:
    fake = FakeClipVision()
    monkeypatch.setattr(pack["conditioning"], "image_tokens", fake.tokens)
    monkeypatch.setattr(pack["conditioning"], "unconditional_tokens", lambda clip_vision: fake.uncond)
    return fake


@pytest.fixture(scope="module")
def tiny(pack):
    """Tiny 512 and 512_interp host models (text width 48, CLIP width 40) and a tiny host VAE."""
    import comfy.sd

    sd = tiny_parts()
    out = {}
    for variant in ("512", "512_interp"):
        ckpt = checkpoint_from_state_dict(f"dynamicrafter_{variant}_tiny.safetensors", sd, variant)
        out[variant] = pack["patcher"].model_from_checkpoint(ckpt, "fp32")
    vae_sd = {k.removeprefix("first_stage_model."): v for k, v in sd.items() if k.startswith("first_stage_model.")}
    out["vae"] = comfy.sd.VAE(sd=vae_sd, config={"params": {"ddconfig": TINY_VAE, "embed_dim": 4}})
    g = torch.Generator().manual_seed(9)
    out["positive"] = conditioning(torch.randn(1, 77, 48, generator=g))
    out["negative"] = conditioning(torch.randn(1, 77, 48, generator=g))
    return out


@pytest.fixture
def golden_clip(pack, monkeypatch):
    """CLIP vision stand-in returning the original's CLIP stand-in tokens for image 1 (and only for it)."""

    def install(golden: dict[str, torch.Tensor]) -> None:
        first = as_image(golden["image_first"])

        def tokens(clip_vision, image):
            assert torch.allclose(image, first, rtol=0, atol=1e-6), "CLIP vision must see the FIRST keyframe"
            return golden["image_embeds"]

        monkeypatch.setattr(pack["conditioning"], "image_tokens", tokens)
        monkeypatch.setattr(pack["conditioning"], "unconditional_tokens", lambda cv: golden["uc_image_embeds"])

    return install


@pytest.fixture(scope="module")
def fixture_model(pack):
    """The shared small_512 parity network, loaded as the 512_interp variant through the pack's loader code."""
    return pack["patcher"].model_from_checkpoint(FixtureSet(PARITY_SMALL_512).checkpoint("512_interp"), "fp32")
