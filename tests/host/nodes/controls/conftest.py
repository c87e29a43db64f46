"""Fixtures of the sampler-control host tests: the pack's control and sampler modules in the host, and the
small_512 parity network (tests/data/parity) through the pack's loader code as the 512 and 512_interp
variants; stand-in encoders for the conditioning-image controls."""

from __future__ import annotations

import pytest
import torch

from support.controls_parts import load_fixture


@pytest.fixture(scope="module")
def pack(comfy_host):
    modules = {
        name.rsplit(".", 1)[-1]: comfy_host.import_pack_module(f"nodes.{name}")
        for name in ("pin_frames", "adapter.family", "sampler", "adapter.ksampler", "adapter.patcher")
    }
    import comfy_extras.nodes_custom_sampler as custom

    modules["custom"] = custom
    return modules


@pytest.fixture(scope="module")
def fixture_model(pack):
    return load_fixture(pack, "512")


@pytest.fixture(scope="module")
def interp_model(pack):
    return load_fixture(pack, "512_interp")


class StandInEncoders:
    """A VAE and a CLIP vision stand-in (fixed functions of the picture) that record what they were shown."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(11)
        self.vae_weight = torch.randn(4, 3, generator=g)
        self.clip_weight = torch.randn(96, 257 * 40, generator=g) / 96**0.5
        self.uncond = torch.randn(1, 257, 40, generator=g)
        self.vae_seen: list[torch.Tensor] = []
        self.clip_seen: list[torch.Tensor] = []

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.vae_seen.append(pixels.clone())
        pooled = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.einsum("oc,bchw->bohw", self.vae_weight, pooled) * 5

    def tokens(self, clip_vision, image: torch.Tensor) -> torch.Tensor:
        self.clip_seen.append(image.clone())
        pooled = torch.nn.functional.adaptive_avg_pool2d(image.movedim(-1, 1).float(), (4, 8)).flatten(1)
        return (pooled @ self.clip_weight).view(-1, 257, 40)


@pytest.fixture
def encoders(comfy_host, monkeypatch) -> StandInEncoders:
    fake = StandInEncoders()
    conditioning = comfy_host.import_pack_module("nodes.conditioning")
    monkeypatch.setattr(conditioning, "image_tokens", fake.tokens)
    monkeypatch.setattr(conditioning, "unconditional_tokens", lambda clip_vision: fake.uncond)
    return fake
