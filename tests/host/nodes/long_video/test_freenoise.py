"""FreeNoise in the real host: the model patch under the DynamiCrafter Sampler against the adapted reference
(``tests/data/parity_freenoise``), the Long Video node's one-pass mode, and bad settings refused when queued."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from dynamicrafter import freenoise
from support.long_video_parts import HEIGHT, SCALE, WIDTH, SampleRecorder, pictures, settings
from support.parity_data import relative_error, relative_l2

GOLDENS = Path(__file__).resolve().parents[3] / "data" / "parity_freenoise"
TOL = 1e-4


@pytest.fixture(scope="module")
def freenoise_nodes(comfy_host):
    return comfy_host.import_pack_module("nodes.freenoise")


def golden_conds(pack, g: dict[str, torch.Tensor], frames: int):
    """The reference run's conditioning as the conditioning node lays it out (image latent on every frame)."""
    m = pack["family"]
    shared = {m.COND_CONCAT: g["c_concat"][:, :, 0] / SCALE, m.COND_FRAMES: frames, m.COND_FS: 24, m.COND_TASK: "i2v"}
    positive = [[g["text_emb"], {**shared, m.COND_IMAGE_TOKENS: g["image_embeds"]}]]
    negative = [[g["uc_text_emb"], {**shared, m.COND_IMAGE_TOKENS: g["uc_image_embeds"]}]]
    return positive, negative, {"samples": torch.zeros(frames, 4, 8, 16)}


def test_patched_model_under_the_sampler_equals_the_adapted_reference(
    pack, fixture_model, freenoise_nodes, monkeypatch, single_thread
):
    import comfy.sample

    frames, g = 32, load_file(str(GOLDENS / "ddim_32.safetensors"))
    positive, negative, latent = golden_conds(pack, g, frames)
    base = rearrange(g["base"], "b c t h w -> (b t) c h w")
    monkeypatch.setattr(comfy.sample, "prepare_noise", lambda samples, seed, *args: base.clone())
    patched = freenoise_nodes.DynamiCrafterFreeNoise.execute(fixture_model, 16, 4).result[0]
    sampler = pack["sampler"].DynamiCrafterSampler
    run = lambda model: sampler.execute(  # noqa: E731
        model, positive, negative, latent, 123, 3, 7.5, 0.0, 0.7, "auto", "auto"
    ).result[0]["samples"]
    with torch.no_grad():
        ours = rearrange(run(patched) * SCALE, "(b t) c h w -> b c t h w", t=frames)
        plain = rearrange(run(fixture_model) * SCALE, "(b t) c h w -> b c t h w", t=frames)
    l2, worst = relative_l2(ours, g["eta0.final"]), relative_error(ours, g["eta0.final"])
    print(f"FreeNoise 32 frames through the host: relative L2 {l2:.2e}, max |delta| / std {worst:.2e}")
    assert l2 < TOL and worst < 5 * TOL
    assert relative_l2(plain, g["eta0.final"]) > 1e-2  # the patch is what makes it the reference's run


def _long_video(pack, tiny, mode: str, total: int, seed: int = 3):
    node = pack["long_video"].DynamiCrafterLongVideo
    s = settings(pack, seed=seed)
    args = (tiny["512"], tiny["positive"], tiny["negative"], tiny["vae"], object(), pictures(1, seed=4), total, 4)
    rest = (True, False, WIDTH, HEIGHT, 16, 0, s.seed, s.steps, s.cfg, s.eta, s.guidance_rescale, "crop")
    with torch.no_grad():
        return node.execute(*args, mode, *rest).result[0]


def test_long_video_freenoise_mode_at_sixteen_frames_is_the_plain_clip(pack, tiny, fake_clip, single_thread):
    freenoise = _long_video(pack, tiny, "FreeNoise one pass", 16)
    plain = _long_video(pack, tiny, "continue", 16)
    assert freenoise.shape == (16, HEIGHT, WIDTH, 3)
    assert torch.equal(freenoise, plain)


def test_long_video_freenoise_mode_samples_every_frame_in_one_pass(pack, tiny, fake_clip, monkeypatch, single_thread):
    recorder = SampleRecorder(pack, monkeypatch)
    video = _long_video(pack, tiny, "FreeNoise one pass", 26)
    assert video.shape == (26, HEIGHT, WIDTH, 3) and len(recorder.positives) == 1
    assert recorder.positives[0][0][1][pack["family"].COND_FRAMES] == 26
    crossfaded = _long_video(pack, tiny, "continue", 26)
    assert not torch.allclose(video, crossfaded, atol=1e-3)


def _queue_errors(comfy_host, class_type: str, inputs: dict) -> str:
    prompt = {"1": {"class_type": class_type, "inputs": inputs}}
    ok, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
    assert not ok
    return json.dumps(errors)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"window": 16, "stride": 0}, "stride = 0 is below its minimum 1"),
        ({"window": 8, "stride": 12}, "at most the window (8)"),
        ({"window": 32, "stride": 4}, "window = 32 is above its maximum 16"),
    ],
)
def test_bad_patch_settings_are_refused_when_queued(comfy_host, freenoise_nodes, inputs, message):
    assert message in _queue_errors(comfy_host, "DynamiCrafterFreeNoise", inputs)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"total_frames": 12}, "window (16 frames) is longer than the video (12 frames)"),
        ({"total_frames": 100_000}, "total_frames = 100000 is above its maximum"),
        ({"total_frames": 2000, "width": 256, "height": 256}, "more than one FreeNoise pass makes"),
        ({"total_frames": 1000, "width": 1024, "height": 576}, "in one FreeNoise pass would need about"),
    ],
)
def test_bad_long_videos_in_freenoise_mode_are_refused_when_queued(comfy_host, pack, inputs, message):
    values = {"mode": "FreeNoise one pass", "width": 512, "height": 320, "clip_frames": 16, **inputs}
    assert message in _queue_errors(comfy_host, "DynamiCrafterLongVideo", values)
    # the same length is fine for the cross-faded clips when it fits their limits
    if inputs["total_frames"] == 12:
        prompt = {"1": {"class_type": "DynamiCrafterLongVideo", "inputs": {**values, "mode": "continue"}}}
        _, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
        assert "longer than the video" not in json.dumps(errors)


def test_interpolation_over_32_frames_with_the_stock_ksampler(pack, tiny, fake_clip, freenoise_nodes, monkeypatch):
    """The patch under the stock KSampler (comfy.sample.sample): the wrapper reschedules the KSampler's noise
    with its seed, the windows run, and the video differs from the unpatched model's."""
    import comfy.sample

    seen = []
    original = freenoise_nodes.rescheduled
    monkeypatch.setattr(
        freenoise_nodes,
        "rescheduled",
        lambda noise, frames, s, seed: seen.append((frames, seed)) or original(noise, frames, s, seed),
    )
    node = pack["conditioning"].DynamiCrafterInterpolation
    positive, negative, latent = node.execute(
        tiny["positive"],
        tiny["negative"],
        tiny["vae"],
        object(),
        pictures(1, seed=4),
        "interpolate",
        WIDTH,
        HEIGHT,
        32,
        0,
        1,
        "crop",
        end_image=pictures(1, seed=7),
        end_image_tokens=0.5,
    ).result
    model = tiny["512_interp"]
    patched = freenoise_nodes.DynamiCrafterFreeNoise.execute(model, 16, 4).result[0]
    noise = comfy.sample.prepare_noise(latent["samples"], 11)
    sample = lambda m: comfy.sample.sample(  # noqa: E731
        m, noise, 2, 7.5, "euler", "normal", positive, negative, latent["samples"], seed=11
    )
    with torch.no_grad():
        ours, plain = sample(patched), sample(model)
    assert seen == [(32, 11)]
    assert ours.shape == (32, 4, HEIGHT // 8, WIDTH // 8) and bool(torch.isfinite(ours).all())
    assert not torch.allclose(ours, plain, atol=1e-4)
    assert freenoise.OPTION not in model.model_options.get("transformer_options", {})  # the input is untouched
