"""The conditioning-image controls of the Interpolate node: noise augmentation reaches the VAE and CLIP vision,
and the end picture's token blend equals the reference sampler fed with the same blend."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.frames import unfold_frames
from support.controls_parts import (
    FRAMES,
    SCALE,
    SEED,
    as_video,
    assert_matches,
    golden,
)
from support.parity_data import relative_l2
from support.reference_data import PARITY_SMALL_512


def two_pictures() -> tuple[torch.Tensor, torch.Tensor]:
    coarse = torch.rand(2, 3, 4, 8, generator=torch.Generator().manual_seed(2))
    pictures = torch.nn.functional.interpolate(coarse, size=(64, 128), mode="bilinear").movedim(1, -1).contiguous()
    return pictures[:1], pictures[1:]


def interpolation(comfy_host, encoders, g, **controls):
    node = comfy_host.import_pack_module("nodes.conditioning").DynamiCrafterInterpolation
    start, end = two_pictures()
    return node.execute(
        [[g["text_emb"], {}]],
        [[g["uc_text_emb"], {}]],
        encoders,
        object(),
        start,
        "interpolate",
        128,
        64,
        FRAMES,
        5,
        1,
        "crop",
        end_image=end,
        **controls,
    ).result


def test_noise_augmentation_reaches_the_vae_and_clip(comfy_host, encoders):
    from dynamicrafter.image import fit_image
    from dynamicrafter.image_controls import augment

    g = golden("multicond")
    interpolation(comfy_host, encoders, g, noise_augmentation=0.05)
    start, end = two_pictures()
    expected = [augment(fit_image(p, 128, 64, "crop"), 0.05) for p in (start, end)]
    assert all(torch.equal(a, b) for a, b in zip(encoders.vae_seen, expected, strict=True))
    assert torch.equal(encoders.clip_seen[0], expected[0])
    assert (expected[0] - start).abs().mean() > 0.02  # the noise is really there


@pytest.mark.parametrize("schedule", ["constant", "ramp"])
def test_end_token_blend_equals_the_reference_sampler(
    pack, comfy_host, interp_model, encoders, single_thread, schedule
):
    """The Interpolate node's end-token share, through the host sampler, against the reference DDIM fed with the
    wrapper's blend of the two pictures' Resampler outputs (per frame)."""
    import comfy.sample

    from dynamicrafter.ddim import DDIMSettings, ddim_sample
    from dynamicrafter.image_controls import blend_frame_tokens, end_token_weights
    from dynamicrafter.schedule import make_schedule
    from support.parity_data import FixtureSet

    g = golden("multicond")
    positive, negative, latent = interpolation(
        comfy_host, encoders, g, end_image_tokens=0.6, end_token_schedule=schedule
    )
    model_module = pack["family"]
    with torch.no_grad():
        out = (
            pack["sampler"]
            .DynamiCrafterSampler.execute(
                interp_model, positive, negative, latent, SEED, 3, 7.5, 0.0, 0.7, "auto", "auto"
            )
            .result[0]["samples"]
        )
        fixture = FixtureSet(PARITY_SMALL_512)
        unet, resampler = fixture.networks()
        concat = unfold_frames(positive[0][1][model_module.COND_CONCAT] * SCALE, FRAMES)
        clip_start, clip_end = encoders.clip_seen[0], encoders.clip_seen[1]
        tokens = blend_frame_tokens(
            resampler(encoders.tokens(None, clip_start)),
            resampler(encoders.tokens(None, clip_end)),
            end_token_weights(FRAMES, 0.6, schedule),
        )
        uc_tokens = resampler(encoders.uncond)

        def model(x, t, text_and_image):
            text, image = text_and_image
            return unet(torch.cat([x, concat], dim=1), t, text, torch.tensor([5]), image_context=image)

        x_t = unfold_frames(comfy.sample.prepare_noise(latent["samples"], SEED), FRAMES)
        settings = DDIMSettings(steps=3, eta=0.0, cfg=7.5, spacing="uniform_trailing", guidance_rescale=0.7)
        *_, (_, reference, _) = ddim_sample(
            model,
            x_t,
            make_schedule(fixture.schedule_config()),
            "v",
            settings,
            cond=(g["text_emb"], tokens),
            uncond=(g["uc_text_emb"], uc_tokens),
            generator=torch.Generator().manual_seed(SEED + 1),
        )
    assert_matches(as_video(out), reference)
    with torch.no_grad():
        unblended = (
            pack["sampler"]
            .DynamiCrafterSampler.execute(
                interp_model,
                *interpolation(comfy_host, encoders, g)[:2],
                latent,
                SEED,
                3,
                7.5,
                0.0,
                0.7,
                "auto",
                "auto",
            )
            .result[0]["samples"]
        )
    assert relative_l2(as_video(unblended), reference) > 1e-3
