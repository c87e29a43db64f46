"""Separate text and image guidance (the Sampler's image_cfg, the Text + Image Guider with SamplerCustomAdvanced
and a stock sampler) against the original's multi-condition guidance (tests/data/parity_controls)."""

from __future__ import annotations

import pytest
import torch

from support.controls_parts import (
    CONFIG,
    FRAMES,
    SEED,
    TOL,
    as_video,
    assert_matches,
    call_node,
    conds,
    empty,
    golden,
    sample,
    sample_custom_advanced,
)
from support.parity_data import relative_l2


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_image_cfg_equals_the_original_multicond(pack, fixture_model, single_thread, eta):
    g = golden("multicond")
    out = sample(pack, fixture_model, g, empty(), eta, image_cfg=CONFIG["runs"]["multicond"]["cfg_img"])
    assert_matches(as_video(out), g[f"eta{eta:g}.final"])
    # and it can fail: one scale is far from the original's two-scale result
    one_scale = sample(pack, fixture_model, g, empty(), eta)
    assert relative_l2(as_video(one_scale), g[f"eta{eta:g}.final"]) > 100 * TOL
    # any image_cfg below 0 is the one-scale run (the widget's -1 is only the default)
    assert torch.equal(sample(pack, fixture_model, g, empty(), eta, image_cfg=-0.5), one_scale)


def test_image_guider_in_sampler_custom_advanced_equals_the_original(pack, fixture_model, single_thread):
    g = golden("multicond")
    positive, negative = conds(pack, g)
    nodes, custom = pack["sampler"], pack["custom"]
    guider = nodes.DynamiCrafterImageGuider.execute(
        fixture_model, positive, negative, CONFIG["sampling"]["cfg"], CONFIG["runs"]["multicond"]["cfg_img"], -1.0
    ).result[0]
    sampler = nodes.DynamiCrafterDDIMSampler.execute(fixture_model, 1.0, "auto").result[0]
    sigmas = nodes.DynamiCrafterScheduler.execute(fixture_model, CONFIG["sampling"]["steps"], "auto").result[0]
    noise = call_node(custom.RandomNoise, noise_seed=SEED)[0]
    out = sample_custom_advanced(pack, noise, guider, sampler, sigmas, empty())
    assert_matches(as_video(out), g["eta1.final"])


def test_image_guider_drives_a_stock_sampler(pack, fixture_model, single_thread):
    g = golden("multicond")
    positive, negative = conds(pack, g)
    nodes, custom = pack["sampler"], pack["custom"]
    guider = nodes.DynamiCrafterImageGuider.execute(fixture_model, positive, negative, 7.5, 2.5, -1.0).result[0]
    sampler = call_node(custom.KSamplerSelect, sampler_name="euler")[0]
    sigmas = call_node(custom.BasicScheduler, model=fixture_model, scheduler="normal", steps=3, denoise=1.0)[0]
    out = sample_custom_advanced(pack, call_node(custom.RandomNoise, noise_seed=1)[0], guider, sampler, sigmas, empty())
    assert out.shape == (FRAMES, 4, 8, 16) and torch.isfinite(out).all() and out.abs().max() > 0
