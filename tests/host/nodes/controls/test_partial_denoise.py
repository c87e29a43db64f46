"""Partial denoise (the Sampler's denoise, SamplerCustomAdvanced, the stock KSampler) against the original
started part way (tests/data/parity_controls); full runs start from noise, denoise 0 returns the input."""

from __future__ import annotations

import pytest
import torch

from support.controls_parts import (
    CONFIG,
    SEED,
    as_video,
    assert_matches,
    call_node,
    conds,
    golden,
    host_latent,
    sample,
    sample_custom_advanced,
)
from support.parity_data import relative_l2


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_partial_denoise_equals_the_original_started_part_way(pack, fixture_model, single_thread, eta):
    g = golden("partial")
    out = sample(pack, fixture_model, g, {"samples": host_latent(g["start_latent"])}, eta, denoise=0.6)
    assert_matches(as_video(out), g[f"eta{eta:g}.final"])


def test_partial_denoise_in_sampler_custom_advanced_equals_the_original(pack, fixture_model, single_thread):
    """Stock CFGGuider (video guidance rescale patched in), the DDIM sampler and the Scheduler's denoise."""
    g = golden("partial")
    positive, negative = conds(pack, g)
    nodes, custom = pack["sampler"], pack["custom"]
    patched = nodes.DynamiCrafterGuidanceRescale.execute(fixture_model, -1.0).result[0]
    guider = call_node(custom.CFGGuider, model=patched, positive=positive, negative=negative, cfg=7.5)[0]
    sampler = nodes.DynamiCrafterDDIMSampler.execute(fixture_model, 1.0, "auto").result[0]
    sigmas = nodes.DynamiCrafterScheduler.execute(fixture_model, CONFIG["sampling"]["steps"], "auto", 0.6).result[0]
    out = sample_custom_advanced(
        pack,
        call_node(custom.RandomNoise, noise_seed=SEED)[0],
        guider,
        sampler,
        sigmas,
        {"samples": host_latent(g["start_latent"])},
    )
    assert_matches(as_video(out), g["eta1.final"])


def test_full_runs_start_from_noise_partial_runs_from_the_latent(pack, fixture_model):
    sampling = pack["ksampler"]
    model_sampling = fixture_model.get_model_object("model_sampling")
    for steps, spacing in ((50, "uniform_trailing"), (50, "uniform"), (7, "uniform"), (10, "uniform")):
        assert sampling.starts_from_noise(model_sampling, sampling.dynamicrafter_sigmas(model_sampling, steps, spacing))
        partial = sampling.dynamicrafter_sigmas(model_sampling, steps, spacing, 600)
        assert not sampling.starts_from_noise(model_sampling, partial)
        # a trailing grid over the first M steps is partial even where its top is above the uniform grid's top
        high = sampling.dynamicrafter_sigmas(model_sampling, steps, "uniform_trailing", 990)
        assert not sampling.starts_from_noise(model_sampling, high)


def test_denoise_zero_returns_the_input_in_both_samplers(pack, fixture_model, single_thread):
    g = golden("partial")
    start = {"samples": host_latent(g["start_latent"])}
    ours = sample(pack, fixture_model, g, start, 1.0, denoise=0.0)
    assert torch.equal(ours, start["samples"])
    positive, negative = conds(pack, g)
    import comfy.sample

    noise = comfy.sample.prepare_noise(start["samples"], 3)
    stock = comfy.sample.sample(
        fixture_model, noise, 4, 7.5, "euler", "normal", positive, negative, start["samples"], denoise=0.0
    )
    assert torch.equal(stock, start["samples"])


def test_stock_ksampler_denoise_keeps_part_of_the_input(pack, fixture_model, single_thread):
    g = golden("partial")
    start = host_latent(g["start_latent"])
    positive, negative = conds(pack, g)
    import comfy.sample

    noise = comfy.sample.prepare_noise(start, 3)
    with torch.no_grad():
        light = comfy.sample.sample(
            fixture_model, noise, 4, 7.5, "euler", "normal", positive, negative, start, denoise=0.2
        )
        full = comfy.sample.sample(
            fixture_model, noise, 4, 7.5, "euler", "normal", positive, negative, start, denoise=1.0
        )
    assert torch.isfinite(light).all()
    assert relative_l2(light, start) < relative_l2(full, start)
