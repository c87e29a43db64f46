"""Our UNet and Resampler against the original implementation's golden outputs (fp32)."""

from __future__ import annotations

import pytest
import torch

from support.parity_data import FixtureSet, fixture_sets, relative_error, relative_l2
from support.reference_data import parity_dir

SETS = fixture_sets(parity_dir())
TOL = 1e-4

HOOKED = {  # intermediate name in unet_intermediates -> our module path
    "time_embed_out": "time_embed",
    "fps_embedding_out": "fps_embedding",
    "init_attn.out": "init_attn",
    "input_blocks.3.out": "input_blocks.3",
    "input_blocks.6.out": "input_blocks.6",
    "input_blocks.9.out": "input_blocks.9",
    "input_blocks.11.out": "input_blocks.11",
    "middle_block.out": "middle_block",
    "output_blocks.2.out": "output_blocks.2",
    "output_blocks.5.out": "output_blocks.5",
}


def test_fixtures_present():
    assert SETS, f"no parity fixture sets found in {parity_dir()}"


@pytest.fixture(params=SETS, ids=lambda s: s.name)
def fixture_set(request, single_thread) -> FixtureSet:
    return request.param


def test_resampler_matches_original(fixture_set):
    _, resampler = fixture_set.networks()
    io = fixture_set.tensors("unet_io")
    with torch.no_grad():
        out = resampler(io["image_embeds"])
    assert out.shape == io["resampler_out"].shape
    assert relative_error(out, io["resampler_out"]) < TOL


def test_unet_matches_original(fixture_set):
    unet, _ = fixture_set.networks()
    io = fixture_set.tensors("unet_io")
    with torch.no_grad():
        out = unet(io["x"], io["timesteps"], io["context"], io["fs"])
    assert relative_error(out, io["unet_out"]) < TOL
    assert relative_l2(out, io["unet_out"]) < TOL


def test_unet_with_separate_image_tokens_matches(fixture_set):
    """The host passes text and image tokens separately; the result must be the same."""
    unet, _ = fixture_set.networks()
    io = fixture_set.tensors("unet_io")
    with torch.no_grad():
        out = unet(io["x"], io["timesteps"], io["text_context"], io["fs"], image_context=io["resampler_out"])
    assert relative_error(out, io["unet_out"]) < TOL


def test_fs_none_uses_default_fs(fixture_set):
    unet, _ = fixture_set.networks()
    io = fixture_set.tensors("unet_io")
    default = torch.full_like(io["fs"], fixture_set.config["UNetModel"]["default_fs"])
    with torch.no_grad():
        a = unet(io["x"], io["timesteps"], io["context"], None)
        b = unet(io["x"], io["timesteps"], io["context"], default)
    assert torch.equal(a, b)


def test_unet_intermediates_match_original(fixture_set):
    unet, _ = fixture_set.networks()
    io = fixture_set.tensors("unet_io")
    expected = fixture_set.tensors("unet_intermediates")
    captured: dict[str, torch.Tensor] = {}
    modules = dict(unet.named_modules())
    hooks = [
        modules[path].register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
        for name, path in HOOKED.items()
        if name in expected
    ]
    with torch.no_grad():
        unet(io["x"], io["timesteps"], io["context"], io["fs"])
    for h in hooks:
        h.remove()
    assert set(captured) == {n for n in HOOKED if n in expected}
    for name, tensor in captured.items():
        assert relative_error(tensor, expected[name]) < TOL, name
    mc = unet.config.model_channels
    from dynamicrafter.unet import timestep_embedding

    assert relative_error(timestep_embedding(io["timesteps"], mc), expected["t_emb_sinusoidal"]) < 1e-6
    assert relative_error(timestep_embedding(io["fs"], mc), expected["fs_emb_sinusoidal"]) < 1e-6
