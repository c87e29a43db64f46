"""Interpolation and loop through the pack's conditioning and sampler nodes, and a keyframe chain of two
keyframes, against the ORIGINAL implementation's goldens (``tests/data/parity_interp``), on the small_512
parity network with the original's stand-in encoders."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from support.long_video_parts import (
    FRAMES,
    HEIGHT,
    MAX_TOL,
    SEEDS,
    TOL,
    WIDTH,
    GoldenVAE,
    as_image,
    as_video,
    conditioning,
    golden,
    interpolation_conds,
)
from support.parity_data import relative_error, relative_l2


@pytest.mark.parametrize("task, eta", [("interp", 0.0), ("interp", 1.0), ("loop", 0.0), ("loop", 1.0)])
def test_interpolation_sampling_equals_the_original(pack, fixture_model, golden_clip, single_thread, task, eta):
    import comfy.sample

    g = golden(task)
    golden_clip(g)
    positive, negative, latent = interpolation_conds(pack, g, "interpolate" if task == "interp" else "loop")
    model_module = pack["family"]
    for side in (positive, negative):  # the concat layout reaching the model is the original's c_concat
        concat = fixture_model.model.process_latent_in(side[0][1][model_module.COND_CONCAT])
        assert torch.equal(rearrange(concat, "t c h w -> 1 c t h w"), g["c_concat"])
    seed = SEEDS[task]
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    assert torch.equal(rearrange(noise, "(b t) c h w -> b c t h w", t=FRAMES), g["x_T"])
    with torch.no_grad():
        out = (
            pack["sampler"]
            .DynamiCrafterSampler.execute(
                fixture_model, positive, negative, latent, seed, 5, 7.5, eta, 0.7, "auto", "auto"
            )
            .result[0]["samples"]
        )
    ours, original = as_video(out), g[f"eta{eta:g}.final"]
    l2, worst = relative_l2(ours, original), relative_error(ours, original)
    print(f"{task} eta {eta:g}: relative L2 {l2:.2e}, max |ours - original| / std {worst:.2e}")
    assert l2 < TOL and worst < MAX_TOL


def test_interp_parity_can_fail_the_loop_layout_is_far(pack, fixture_model, golden_clip, single_thread):
    """Same pictures, prompt and seed, but the loop layout: far from the original's interpolation result."""
    g = golden("interp")
    golden_clip(g)
    positive, negative, latent = interpolation_conds(pack, g, "loop")
    with torch.no_grad():
        out = (
            pack["sampler"]
            .DynamiCrafterSampler.execute(
                fixture_model, positive, negative, latent, SEEDS["interp"], 5, 7.5, 0.0, 0.7, "auto", "auto"
            )
            .result[0]["samples"]
        )
    assert relative_l2(as_video(out), g["eta0.final"]) > 100 * TOL


def test_keyframe_chain_of_two_keyframes_is_the_original_interpolation(pack, fixture_model, golden_clip, single_thread):
    g = golden("interp")
    golden_clip(g)
    keyframes = torch.cat([as_image(g["image_first"]), as_image(g["image_last"])])
    with torch.no_grad():
        frames = (
            pack["long_video"]
            .DynamiCrafterKeyframeChain.execute(
                fixture_model,
                conditioning(g["text_emb"]),
                conditioning(g["uc_text_emb"]),
                GoldenVAE(g),
                object(),
                keyframes,
                WIDTH,
                HEIGHT,
                FRAMES,
                5,
                SEEDS["interp"],
                5,
                7.5,
                0.0,
                0.7,
                "crop",
            )
            .result[0]
        )
    assert frames.shape == (FRAMES, 8, 16, 4)  # the golden VAE "decodes" to latents
    ours = as_video(frames.movedim(-1, 1))
    assert relative_l2(ours, g["eta0.final"]) < TOL and relative_error(ours, g["eta0.final"]) < MAX_TOL
