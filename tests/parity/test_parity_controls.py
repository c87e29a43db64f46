"""Sampler controls against the ORIGINAL code (goldens in tests/data/parity_controls): separate text and image
guidance (the original multi-condition DDIM), partial denoise (the grid over the first training steps, as the
wrapper's ddpm_from) and frame pinning (the original sampler's mask path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.ddim import DDIMSettings, Pinning, ddim_sample
from dynamicrafter.schedule import ddim_timesteps, denoise_span, make_schedule, q_sample
from support.parity_data import FixtureSet, relative_error, relative_l2
from support.reference_data import PARITY_SMALL_512

GOLDENS = Path(__file__).resolve().parent.parent / "data" / "parity_controls"
CONFIG = json.loads((GOLDENS / "config.json").read_text())
TOL = 1e-4


def goldens(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / f"{name}.safetensors"))


@pytest.fixture(scope="module")
def network():
    fixture = FixtureSet(PARITY_SMALL_512)
    unet, resampler = fixture.networks()
    return fixture, unet, resampler


def run(
    network,
    g: dict[str, torch.Tensor],
    eta: float,
    image_cfg: float | None = None,
    span: int | None = None,
    pinning: Pinning | None = None,
) -> torch.Tensor:
    fixture, unet, resampler = network
    s = CONFIG["sampling"]
    fs = torch.tensor([s["fs"]])
    with torch.no_grad():
        tokens, uc_tokens = resampler(g["image_embeds"]), resampler(g["uc_image_embeds"])

        def model(x, t, text_and_image):
            text, image = text_and_image
            return unet(torch.cat([x, g["c_concat"]], dim=1), t, text, fs, image_context=image)

        settings = DDIMSettings(
            steps=s["steps"],
            eta=eta,
            cfg=s["cfg"],
            spacing=s["spacing"],
            guidance_rescale=s["guidance_rescale"],
            image_cfg=image_cfg,
            span=span,
        )
        draws = g["draws"]
        steps = ddim_sample(
            model,
            g["x_start"],
            make_schedule(fixture.schedule_config()),
            "v",
            settings,
            cond=(g["text_emb"], tokens),
            uncond=(g["uc_text_emb"], uc_tokens),
            image_only=(g["uc_text_emb"], tokens),
            noise=lambda i: draws[i, -1],
            pinning=pinning,
            pin_noise=lambda i: draws[i, 0],
        )
        return [x for _, x, _ in steps][-1]


def test_goldens_record_their_provenance():
    assert CONFIG["source"]["commit"] == "c453369367122d7fbb0aa38f124e76dc8fe2a91c"
    assert "lvdm/models/samplers/ddim_multiplecond.py" in CONFIG["source"]["git_blob_sha1"]


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_separate_image_guidance_equals_the_original_multicond_sampler(network, single_thread, eta):
    g = goldens("multicond")
    ours = run(network, g, eta, image_cfg=CONFIG["runs"]["multicond"]["cfg_img"])
    assert relative_l2(ours, g[f"eta{eta:g}.final"]) < TOL and relative_error(ours, g[f"eta{eta:g}.final"]) < TOL
    # the image scale really matters: one scale (plain CFG) is far from it
    assert relative_l2(run(network, g, eta), g[f"eta{eta:g}.final"]) > 100 * TOL


def test_partial_denoise_grid_is_the_wrappers_ddpm_from():
    g = goldens("partial")
    span = denoise_span(0.6)
    assert span == CONFIG["runs"]["partial"]["ddpm_from"]
    assert torch.equal(ddim_timesteps(CONFIG["sampling"]["steps"], CONFIG["sampling"]["spacing"], span), g["timesteps"])


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_partial_denoise_equals_the_original(network, single_thread, eta):
    g = goldens("partial")
    schedule = make_schedule(network[0].schedule_config())
    first = int(g["timesteps"][-1])
    assert relative_error(q_sample(schedule, g["start_latent"], first, g["x_T"]), g["x_start"]) < 1e-6
    ours = run(network, g, eta, span=denoise_span(0.6))
    assert relative_l2(ours, g[f"eta{eta:g}.final"]) < TOL and relative_error(ours, g[f"eta{eta:g}.final"]) < TOL
    assert relative_l2(run(network, g, eta, span=denoise_span(0.7)), g[f"eta{eta:g}.final"]) > 100 * TOL


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_pinned_frames_follow_the_original_mask_path_and_come_back_exact(network, single_thread, eta):
    g = goldens("pinned")
    kept = CONFIG["runs"]["pinned"]["keep_frames"]
    keep = torch.zeros(1, 1, g["x_T"].shape[2], 1, 1)
    keep[:, :, kept] = 1.0
    ours = run(network, g, eta, pinning=Pinning(keep, g["start_latent"]))
    free = [f for f in range(keep.shape[2]) if f not in kept]
    expected = g[f"eta{eta:g}.final"]
    assert relative_l2(ours[:, :, free], expected[:, :, free]) < TOL
    assert relative_error(ours[:, :, free], expected[:, :, free]) < TOL
    # kept frames come back as given (the original returns them after one more denoising step)
    assert torch.equal(ours[:, :, kept], g["start_latent"][:, :, kept])
    unpinned = run(network, g, eta)
    assert relative_l2(unpinned[:, :, free], expected[:, :, free]) > 100 * TOL
