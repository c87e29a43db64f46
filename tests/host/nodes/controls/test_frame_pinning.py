"""Pin Frames: pinned frames follow the original and come back exact, with separate guidance, partial denoise
and the stock KSampler too; a bad pin list is refused."""

from __future__ import annotations

import pytest
import torch

from support.controls_parts import (
    CONFIG,
    FRAMES,
    as_video,
    assert_matches,
    conds,
    empty,
    golden,
    host_latent,
    sample,
)
from support.parity_data import relative_error, relative_l2


def pinned_latent(pack, g, pin: str) -> dict:
    return (
        pack["pin_frames"]
        .DynamiCrafterPinFrames.execute({"samples": host_latent(g["start_latent"])}, pin, FRAMES)
        .result[0]
    )


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_pinned_frames_follow_the_original_and_come_back_exact(pack, fixture_model, single_thread, eta):
    g = golden("pinned")
    kept = CONFIG["runs"]["pinned"]["keep_frames"]
    latent = pinned_latent(pack, g, ", ".join(map(str, kept)))
    out = sample(pack, fixture_model, g, latent, eta)
    free = [f for f in range(FRAMES) if f not in kept]
    assert_matches(as_video(out)[:, :, free], g[f"eta{eta:g}.final"][:, :, free])
    assert torch.equal(out[kept], latent["samples"][kept])


@pytest.mark.parametrize("pin", ["0", "0, -1", "2-4, 11"])
def test_pinned_frames_are_exact_with_separate_guidance_and_partial_denoise(pack, fixture_model, single_thread, pin):
    g = golden("pinned")
    latent = pinned_latent(pack, g, pin)
    out = sample(pack, fixture_model, g, latent, 1.0, image_cfg=3.0, denoise=0.8)
    keep = (latent["noise_mask"][:, 0, 0, 0] == 0).nonzero().flatten().tolist()
    assert keep == pack["pin_frames"].parse_frame_list(pin, FRAMES)
    assert torch.equal(out[keep], latent["samples"][keep])
    free = [f for f in range(FRAMES) if f not in keep]
    assert relative_l2(out[free], latent["samples"][free]) > 1e-2


def test_stock_ksampler_keeps_pinned_frames(pack, fixture_model, single_thread):
    import comfy.sample

    g = golden("pinned")
    latent = pinned_latent(pack, g, "0, -1")
    positive, negative = conds(pack, g)
    noise = comfy.sample.prepare_noise(latent["samples"], 5)
    with torch.no_grad():
        out = comfy.sample.sample(
            fixture_model,
            noise,
            4,
            7.5,
            "euler",
            "normal",
            positive,
            negative,
            latent["samples"],
            noise_mask=latent["noise_mask"],
        )
    # the stock sampler ends on its clean estimate, which the host pins: equal up to float rounding
    assert relative_error(out[[0, 15]], latent["samples"][[0, 15]]) < 1e-5
    assert relative_l2(out[1:15], latent["samples"][1:15]) > 1e-2


def test_a_bad_pin_list_is_refused_when_the_node_runs(pack, comfy_host):
    """A pin list wired from another node is only known when the node runs: it is checked then."""
    validation = comfy_host.import_pack_module("nodes.adapter.validation")
    with pytest.raises(validation.InputError, match="pin: frame 16 is outside"):
        pack["pin_frames"].DynamiCrafterPinFrames.execute(empty(), "16", FRAMES)
