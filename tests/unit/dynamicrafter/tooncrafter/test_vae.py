"""ToonCrafter's dual-reference VAE: full-size structure and small-config numbers against the original code.

``tests/data/tooncrafter_vae_manifest.json`` and ``tests/data/tooncrafter_small/`` were produced by the
original ``AutoencoderKL_Dualref`` (Doubiiu/ToonCrafter @ b0c47ff) with
``tests/data/tooncrafter_small/generate_with_original.py``; see the README there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.checkpoint import split_parts
from dynamicrafter.tooncrafter.config import ToonCrafterVAEConfig, is_dual_reference_vae, vae_config_from_state_dict
from dynamicrafter.tooncrafter.decode import decode_video, decoder_calls
from dynamicrafter.tooncrafter.vae import ToonCrafterVAE

DATA = Path(__file__).resolve().parents[3] / "data"
MANIFEST = json.loads((DATA / "tooncrafter_vae_manifest.json").read_text())
SMALL = DATA / "tooncrafter_small"
VAE_PARAMS = 99_941_907  # the released ToonCrafter VAE (tests/data/tooncrafter_small/README.md, its provenance)
DECODER_PARAMS = 65_778_223
TOLERANCE = 1e-4  # relative L2; measured about 5e-7


def _relative(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).norm() / ref.double().norm())


def _meta_vae() -> ToonCrafterVAE:
    with torch.device("meta"):
        return ToonCrafterVAE(ToonCrafterVAEConfig())


def test_meta_vae_has_the_original_keys_and_shapes():
    ours = {k: list(v.shape) for k, v in _meta_vae().state_dict().items()}
    assert ours == MANIFEST["keys"]
    assert len(ours) == MANIFEST["n_keys"] == 396


def test_parameter_counts():
    vae = _meta_vae()
    assert sum(p.numel() for p in vae.parameters()) == MANIFEST["n_parameters"] == VAE_PARAMS
    assert sum(p.numel() for p in vae.decoder.parameters()) == DECODER_PARAMS
    for name, count in MANIFEST["parameters_by_module"].items():
        assert sum(p.numel() for p in getattr(vae, name).parameters()) == count, name


def test_config_from_full_size_shapes():
    sd = {k: torch.empty(shape, device="meta") for k, shape in MANIFEST["keys"].items()}
    assert vae_config_from_state_dict(sd) == ToonCrafterVAEConfig()
    assert ToonCrafterVAEConfig().downscale == 8
    assert is_dual_reference_vae(sd)
    plain = {k: v for k, v in sd.items() if "attn_refinement" not in k and "time_" not in k and "mix_factor" not in k}
    assert not is_dual_reference_vae(plain)


@pytest.fixture(scope="module")
def small():
    """The original's tiny VAE (weights, inputs, outputs) and ours loaded with its weights."""
    config = json.loads((SMALL / "config.json").read_text())
    parts, _ = split_parts({k: v.float() for k, v in load_file(str(SMALL / "weights.safetensors")).items()})
    vae = ToonCrafterVAE(vae_config_from_state_dict(parts["vae"])).eval()
    vae.load_state_dict(parts["vae"], strict=True)
    return vae, load_file(str(SMALL / "io.safetensors")), config


def test_small_config_is_read_from_its_shapes(small):
    vae, _, config = small
    dd = config["ddconfig"]
    assert vae.config.channels == dd["ch"] and list(vae.config.channel_mult) == dd["ch_mult"]
    assert vae.config.num_res_blocks == dd["num_res_blocks"]
    assert vae.config.fusion_levels == (2,)  # the original's attn_level [2, 3] on a 3-level decoder
    assert sum(p.numel() for p in vae.parameters()) == config["n_parameters"]


def test_encoder_matches_original(small, single_thread):
    vae, io, _ = small
    with torch.no_grad():
        h, features = vae.encoder(io["images"])
        assert _relative(vae.quant_conv(h), io["encoder_moments"]) < TOLERANCE
    assert len(features) == 4
    for i, feature in enumerate(features):
        assert _relative(feature, io[f"hidden.{i}"]) < TOLERANCE, f"hidden state {i}"


def _context(vae: ToonCrafterVAE, io: dict) -> list[torch.Tensor]:
    return vae.reference_context(io["images"][:1], io["images"][1:])


def _latents(io: dict, frames: int, scale: float) -> torch.Tensor:
    return io[f"samples{frames}"][0].transpose(0, 1) / scale  # [1, 4, T, h, w] sampler latents -> VAE latents


def test_decoder_chunk_matches_original(small, single_thread):
    vae, io, config = small
    with torch.no_grad():
        out = vae.decode(_latents(io, 16, config["scale_factor"]), _context(vae, io))
    assert _relative(out, io["decoder_chunk16"]) < TOLERANCE


@pytest.mark.parametrize("frames", [16, 17])
def test_video_decode_matches_original_script(small, single_thread, frames):
    vae, io, config = small
    context = _context(vae, io)
    latents = _latents(io, frames, config["scale_factor"])
    reference = io[f"video{frames}"][0].transpose(0, 1)
    with torch.no_grad():
        video = decode_video(lambda z: vae.decode(z, context), latents)
        single_pass = decode_video(lambda z: vae.decode(z, context), latents, middle_pass=False)
    assert _relative(video, reference) < TOLERANCE
    # the second pass is what changes frames 7 and 8: without it the result is measurably off
    assert _relative(single_pass, reference) > 10 * TOLERANCE
    assert torch.equal(single_pass[:7], video[:7]) and torch.equal(single_pass[9:], video[9:])


def test_videos_batched_in_one_call_decode_independently(small, single_thread):
    vae, io, config = small
    context = _context(vae, io)
    swapped = [c.flip(1) for c in context]  # second video: end and start exchanged
    first, second = _latents(io, 16, config["scale_factor"]), _latents(io, 17, config["scale_factor"])[:16]
    with torch.no_grad():
        both = vae.decode(torch.cat([first, second]), [torch.cat(pair) for pair in zip(context, swapped, strict=True)])
        alone = torch.cat([vae.decode(first, context), vae.decode(second, swapped)])
    torch.testing.assert_close(both, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("frames", "middle_pass", "chunks"),
    [
        (16, True, [16, 14]),
        (17, True, [16, 1, 15]),
        (33, True, [16, 16, 1, 16, 15]),
        (16, False, [16]),
        (5, True, [5]),
        (6, True, [6, 4]),
    ],
)
def test_decode_video_chunking(frames, middle_pass, chunks):
    seen: list[list[int]] = []

    def decode(z: torch.Tensor) -> torch.Tensor:
        seen.append(z[:, 0, 0, 0].long().tolist())
        return z[:, :3] * 10  # "pixels" that remember which latent they came from

    latents = torch.arange(frames, dtype=torch.float32)[:, None, None, None].expand(frames, 4, 2, 2)
    video = decode_video(decode, latents, middle_pass=middle_pass)
    assert [len(s) for s in seen] == chunks and decoder_calls(frames, middle_pass=middle_pass) == len(chunks)
    torch.testing.assert_close(video[:, 0, 0, 0], torch.arange(frames, dtype=torch.float32) * 10)
    if len(chunks) > -(-frames // 16):
        second = [i for s in seen[-(-frames // 16) :] for i in s]
        assert second == [i for i in range(frames) if i not in (1, frames - 2)]
