"""Complete deterministic DDIM runs (CFG, guidance rescale, dynamic rescale) against the original."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.ddim import DDIMSettings, ddim_sample
from dynamicrafter.schedule import make_schedule
from support.parity_data import FixtureSet, fixture_sets, relative_error
from support.reference_data import parity_dir

SETS = fixture_sets(parity_dir())
TOL = 1e-4


def _run(fixture_set: FixtureSet, eta: float, noise=None) -> list[torch.Tensor]:
    cfg = fixture_set.config
    unet, resampler = fixture_set.networks()
    t = fixture_set.tensors("ddim")
    d = cfg["diffusion"]
    with torch.no_grad():
        tokens = resampler(t["image_embeds"])
        uc_tokens = resampler(t["uc_image_embeds"])
        assert relative_error(tokens, t["image_tokens"]) < TOL
        assert relative_error(uc_tokens, t["uc_image_tokens"]) < TOL

        def model(x, timestep, text_and_image):
            text, image = text_and_image
            return unet(torch.cat([x, t["c_concat"]], dim=1), timestep, text, t["fs"], image_context=image)

        settings = DDIMSettings(
            steps=cfg["inputs"]["ddim_steps"],
            eta=eta,
            cfg=d["cfg_scale"],
            spacing=d["ddim_discretize"],
            guidance_rescale=d["guidance_rescale"],
            dynamic_rescale=d.get("use_dynamic_rescale", False),
        )
        schedule = make_schedule(fixture_set.schedule_config())
        noise_fn = (lambda i: noise[i]) if noise is not None else (lambda i: torch.randn_like(t["x_T"]))
        steps = ddim_sample(
            model,
            t["x_T"],
            schedule,
            d["parameterization"],
            settings,
            cond=(t["text_emb"], tokens),
            uncond=(t["uc_text_emb"], uc_tokens),
            noise=noise_fn,
        )
        return [t["x_T"]] + [x for _, x, _ in steps]


@pytest.mark.parametrize("fixture_set", SETS, ids=lambda s: s.name)
def test_ddim_eta0_matches_original(fixture_set, single_thread):
    t = fixture_set.tensors("ddim")
    xs = _run(fixture_set, eta=0.0)
    assert len(xs) == t["eta0.x_inter"].shape[0]
    for i, (ours, theirs) in enumerate(zip(xs, t["eta0.x_inter"])):
        assert relative_error(ours, theirs) < TOL, f"iteration {i}"
    assert relative_error(xs[-1], t["eta0.final"]) < TOL


@pytest.mark.parametrize("fixture_set", SETS, ids=lambda s: s.name)
def test_ddim_eta1_matches_original(fixture_set, single_thread):
    t = fixture_set.tensors("ddim")
    xs = _run(fixture_set, eta=1.0, noise=t["eta1.noise"])
    assert relative_error(xs[-1], t["eta1.final"]) < TOL
