"""Long videos in the real host: keyframe chain and long image-to-video nodes, and interpolation / loop
parity of the pack's conditioning + sampler path against the ORIGINAL implementation.

Tiny networks run in-process; CLIP vision is replaced by a stand-in (``image_tokens`` patched in the
conditioning module) and text conditioning is given directly, as in test_host_fidelity. One graph at the
end runs both nodes through the real loader and encoders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image
from safetensors.torch import load_file

from dynamicrafter.chain import ContinuationPlan, crossfade_weights
from dynamicrafter.checkpoint import checkpoint_from_state_dict
from support.parity_data import relative_error, relative_l2
from support.reference_data import PARITY_SMALL_512, manifest_path
from support.tiny_checkpoints import tiny_resampler_state_dict, tiny_unet_state_dict

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "parity_interp"
SCALE = 0.18215
TOL = 1e-4
"""Relative L2 of the final latents. The interpolation layout is more sensitive to float noise than i2v: the
original against itself with 2 threads instead of 1 moves by up to 2e-5 relative L2 and 1.6e-4 max |delta| / std
(config.json, noise_floor_original_2_threads_vs_1), so the element-wise bound is MAX_TOL."""
MAX_TOL = 5e-4
WIDTH, HEIGHT, FRAMES = 128, 64, 16
TINY_VAE = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 2, 2, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "dropout": 0.0,
}


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def pack(comfy_host):
    """The pack's modules, and the long-video nodes registered with the host."""
    modules = {
        name: comfy_host.import_pack_module(f"nodes.{name}")
        for name in ("long_video", "conditioning", "model", "sampler_nodes", "host_model")
    }
    comfy_host.register(modules["long_video"].NODES)
    return modules


def as_image(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> ComfyUI IMAGE [B, H, W, 3] in 0..1."""
    return ((pixels + 1) / 2).movedim(1, -1).contiguous()


def conditioning(text: torch.Tensor) -> list:
    return [[text, {}]]


class FakeClipVision:
    """Stand-in for CLIP vision: tokens [1, 257, 40] as a fixed function of the picture; records each picture."""

    def __init__(self, seed: int = 5) -> None:
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(96, 257 * 40, generator=g) / 96**0.5
        self.uncond = torch.randn(1, 257, 40, generator=g)
        self.seen: list[torch.Tensor] = []

    def tokens(self, clip_vision, image: torch.Tensor) -> torch.Tensor:
        self.seen.append(image.clone())
        pooled = torch.nn.functional.adaptive_avg_pool2d(image.movedim(-1, 1).float(), (4, 8)).flatten(1)
        return (pooled @ self.weight).view(-1, 257, 40)


@pytest.fixture
def fake_clip(pack, monkeypatch) -> FakeClipVision:
    fake = FakeClipVision()
    monkeypatch.setattr(pack["conditioning"], "image_tokens", fake.tokens)
    monkeypatch.setattr(pack["conditioning"], "unconditional_tokens", lambda clip_vision: fake.uncond)
    return fake


class RecordingVAE:
    """Delegates to a host VAE and records every picture it encodes."""

    def __init__(self, vae) -> None:
        self.vae, self.encoded = vae, []

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.encoded.append(pixels.clone())
        return self.vae.encode(pixels)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(samples)


def _tiny_parts() -> dict[str, torch.Tensor]:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    vae = AutoencoderKL(ddconfig=TINY_VAE, embed_dim=4)
    g = torch.Generator().manual_seed(3)
    sd = {f"model.diffusion_model.{k}": v for k, v in tiny_unet_state_dict("512").items()}
    sd.update({f"image_proj_model.{k}": v for k, v in tiny_resampler_state_dict().items()})
    sd.update({f"first_stage_model.{k}": torch.randn(v.shape, generator=g) * 0.02 for k, v in vae.state_dict().items()})
    return sd


@pytest.fixture(scope="module")
def tiny(pack):
    """Tiny 512 and 512_interp host models (text width 48, CLIP width 40) and a tiny host VAE."""
    import comfy.sd

    sd = _tiny_parts()
    out = {}
    for variant in ("512", "512_interp"):
        ckpt = checkpoint_from_state_dict(f"dynamicrafter_{variant}_tiny.safetensors", sd, variant)
        out[variant] = pack["host_model"].model_from_checkpoint(ckpt, "fp32")
    vae_sd = {k.removeprefix("first_stage_model."): v for k, v in sd.items() if k.startswith("first_stage_model.")}
    out["vae"] = comfy.sd.VAE(sd=vae_sd, config={"params": {"ddconfig": TINY_VAE, "embed_dim": 4}})
    g = torch.Generator().manual_seed(9)
    out["positive"] = conditioning(torch.randn(1, 77, 48, generator=g))
    out["negative"] = conditioning(torch.randn(1, 77, 48, generator=g))
    return out


def pictures(count: int, seed: int = 0) -> torch.Tensor:
    """Smooth random IMAGE batch [count, HEIGHT, WIDTH, 3]."""
    coarse = torch.rand(count, 3, 4, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear").movedim(1, -1).contiguous()


def settings(pack, seed: int = 3, steps: int = 2, eta: float = 1.0):
    return pack["long_video"].SamplingSettings(seed=seed, steps=steps, cfg=7.5, eta=eta, guidance_rescale=-1.0)


class SampleRecorder:
    """Wraps ClipSampler.sample to record the positive conditioning of each clip it finished."""

    def __init__(self, pack, monkeypatch) -> None:
        self.positives: list = []
        original = pack["long_video"].ClipSampler.sample

        def sample(sampler, index, positive, negative, latent):
            out = original(sampler, index, positive, negative, latent)
            self.positives.append(positive)
            return out

        monkeypatch.setattr(pack["long_video"].ClipSampler, "sample", sample)

    def tokens(self, pack, index: int) -> torch.Tensor:
        return self.positives[index][0][1][pack["model"].COND_IMAGE_TOKENS]


# ------------------------------------------------------------------ parity with the original (goldens)


class GoldenVAE:
    """Encodes the golden pictures to the original stand-in VAE's raw latents; decodes to the latents."""

    def __init__(self, golden: dict[str, torch.Tensor]) -> None:
        self.latents = [(as_image(golden["image_first"]), golden["latent_first_raw"])]
        if "image_last" in golden:
            self.latents.append((as_image(golden["image_last"]), golden["latent_last_raw"]))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        for image, latent in self.latents:
            if pixels.shape == image.shape and torch.allclose(pixels, image, rtol=0, atol=1e-6):
                return latent.clone()
        raise AssertionError("the VAE got a picture that is not one of the keyframes")

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return samples.movedim(1, -1)  # [T, h, w, 4]: the node's "frames" carry the sampled latents


@pytest.fixture
def golden_clip(pack, monkeypatch):
    """CLIP vision stand-in returning the original's CLIP stand-in tokens for image 1 (and only for it)."""

    def install(golden: dict[str, torch.Tensor]) -> None:
        first = as_image(golden["image_first"])

        def tokens(clip_vision, image):
            assert torch.allclose(image, first, rtol=0, atol=1e-6), "CLIP vision must see the FIRST keyframe"
            return golden["image_embeds"]

        monkeypatch.setattr(pack["conditioning"], "image_tokens", tokens)
        monkeypatch.setattr(pack["conditioning"], "unconditional_tokens", lambda cv: golden["uc_image_embeds"])

    return install


@pytest.fixture(scope="module")
def fixture_model(pack):
    """The shared small_512 parity network, loaded as the 512_interp variant through the pack's loader code."""
    folder = PARITY_SMALL_512
    sd = {**load_file(str(folder / "weights.safetensors")), **load_file(str(folder / "buffers.safetensors"))}
    ckpt = checkpoint_from_state_dict(folder / "weights.safetensors", sd, "512_interp")
    return pack["host_model"].model_from_checkpoint(ckpt, "fp32")


def golden(task: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / f"{task}.safetensors"))


SEEDS = {"interp": 12306, "loop": 234}


def interpolation_conds(pack, g: dict[str, torch.Tensor], mode: str):
    """Conditioning exactly as the Interpolate / Loop node builds it, from the golden pictures."""
    end = as_image(g["image_last"]) if "image_last" in g else None
    node = pack["conditioning"].DynamiCrafterInterpolation
    return node.execute(
        conditioning(g["text_emb"]),
        conditioning(g["uc_text_emb"]),
        GoldenVAE(g),
        object(),
        as_image(g["image_first"]),
        mode,
        WIDTH,
        HEIGHT,
        FRAMES,
        5,
        1,
        "crop",
        end_image=end,
    ).result


def as_video(latent: torch.Tensor) -> torch.Tensor:
    """Host latents (frames as batch, VAE scale) -> the original's [B, C, T, h, w] model-scale latents."""
    return rearrange(latent * SCALE, "(b t) c h w -> b c t h w", t=FRAMES)


@pytest.mark.parametrize("task, eta", [("interp", 0.0), ("interp", 1.0), ("loop", 0.0), ("loop", 1.0)])
def test_interpolation_sampling_equals_the_original(pack, fixture_model, golden_clip, single_thread, task, eta):
    import comfy.sample

    g = golden(task)
    golden_clip(g)
    positive, negative, latent = interpolation_conds(pack, g, "interpolate" if task == "interp" else "loop")
    model_module = pack["model"]
    for side in (positive, negative):  # the concat layout reaching the model is the original's c_concat
        concat = fixture_model.model.process_latent_in(side[0][1][model_module.COND_CONCAT])
        assert torch.equal(rearrange(concat, "t c h w -> 1 c t h w"), g["c_concat"])
    seed = SEEDS[task]
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    assert torch.equal(rearrange(noise, "(b t) c h w -> b c t h w", t=FRAMES), g["x_T"])
    with torch.no_grad():
        out = (
            pack["sampler_nodes"]
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
            pack["sampler_nodes"]
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


# -------------------------------------------------------------------------------- keyframe chain


def test_keyframe_chain_joins_segments_once_per_keyframe(pack, tiny, fake_clip, monkeypatch, single_thread):
    import comfy.utils

    recorder = SampleRecorder(pack, monkeypatch)
    vae = RecordingVAE(tiny["vae"])
    keyframes = pictures(3)
    progress: list[tuple[int, int]] = []
    monkeypatch.setattr(
        comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: progress.append((value, total))
    )
    line = torch.full((1, 77, 48), 0.25)
    clip = type(
        "FakeCLIP",
        (),
        {"tokenize": lambda self, text: text, "encode_from_tokens_scheduled": lambda self, tokens: conditioning(line)},
    )()
    with torch.no_grad():
        frames = (
            pack["long_video"]
            .DynamiCrafterKeyframeChain.execute(
                tiny["512_interp"],
                tiny["positive"],
                tiny["negative"],
                vae,
                object(),
                keyframes,
                WIDTH,
                HEIGHT,
                FRAMES,
                0,
                11,
                2,
                7.5,
                1.0,
                -1.0,
                "crop",
                clip=clip,
                segment_prompts="\na kite rising",
            )
            .result[0]
        )
    assert frames.shape == (2 * (FRAMES - 1) + 1, HEIGHT, WIDTH, 3)
    # segment i interpolates keyframe i -> i+1: the VAE saw (k0, k1), (k1, k2); CLIP saw each segment's start
    order = [0, 1, 1, 2]
    assert all(torch.equal(seen, keyframes[i : i + 1]) for seen, i in zip(vae.encoded, order, strict=True))
    assert all(torch.equal(seen, keyframes[i : i + 1]) for seen, i in zip(fake_clip.seen, [0, 1], strict=True))
    # an empty line uses the positive input; a text line its own encoding
    assert recorder.positives[0][0][0] is tiny["positive"][0][0]
    assert torch.equal(recorder.positives[1][0][0], line)
    # one progress bar across both segments, ending full
    assert progress[-1] == (4, 4) and [v for v, _ in progress] == sorted(v for v, _ in progress)


def test_keyframe_chain_honours_cancel_between_segments(pack, tiny, fake_clip, monkeypatch, single_thread):
    import comfy.model_management as mm
    import comfy.utils

    recorder = SampleRecorder(pack, monkeypatch)

    def hook(value, total, preview, node_id=None):
        if value == 1:  # the first segment's last step (steps = 1)
            mm.interrupt_current_processing(True)

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    with pytest.raises(mm.InterruptProcessingException), torch.no_grad():
        pack["long_video"].DynamiCrafterKeyframeChain.execute(
            tiny["512_interp"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            pictures(3),
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            11,
            1,
            7.5,
            1.0,
            -1.0,
            "crop",
        )
    assert len(recorder.positives) == 1 and not mm.processing_interrupted()


@pytest.mark.parametrize(
    "case, message",
    [
        ("one keyframe", "at least 2 keyframes"),
        ("not interp", "512_interp checkpoint"),
        ("prompt lines", "segment_prompts has 1 lines but there are 2 segments"),
        ("no clip", "needs the 'clip' input"),
    ],
)
def test_keyframe_chain_errors_are_clear(pack, tiny, case, message):
    kwargs = {"model": tiny["512_interp"], "keyframes": pictures(3), "segment_prompts": ""}
    if case == "one keyframe":
        kwargs["keyframes"] = pictures(1)
    elif case == "not interp":
        kwargs["model"] = tiny["512"]
    elif case == "prompt lines":
        kwargs["segment_prompts"] = "only one line"
    else:
        kwargs["segment_prompts"] = "a\nb"
    with pytest.raises(ValueError, match=message):
        pack["long_video"].DynamiCrafterKeyframeChain.execute(
            kwargs["model"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            kwargs["keyframes"],
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            1,
            1,
            7.5,
            1.0,
            -1.0,
            "crop",
            segment_prompts=kwargs["segment_prompts"],
        )


def test_keyframes_of_different_sizes_are_refused(pack):
    with pytest.raises(ValueError, match="keyframes differ in size"):
        pack["long_video"].stack_keyframes([pictures(1), torch.zeros(1, 32, 32, 3)])


# ------------------------------------------------------------------------------------ long video


def test_long_video_blends_each_join_and_keeps_the_exact_length(pack, tiny, fake_clip, monkeypatch, single_thread):
    recorder = SampleRecorder(pack, monkeypatch)
    vae = RecordingVAE(tiny["vae"])
    source = pictures(1, seed=4)
    plan = ContinuationPlan(total=30, clip_frames=FRAMES, overlap=4)
    long_video = pack["long_video"]
    with torch.no_grad():
        result = long_video.generate_long_video(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            vae,
            object(),
            source,
            plan,
            WIDTH,
            HEIGHT,
            0,
            "crop",
            settings(pack),
            long_video.MODE_CONTINUE,
            anchor_tokens=True,
            match_colors=False,
        )
    video, clips = result.video, result.clips
    assert plan.clips == 3 and video.shape == (30, HEIGHT, WIDTH, 3)
    weights = crossfade_weights(plan.overlap)
    for k in range(1, plan.clips):
        # clip k starts from the frame where the overlap with clip k-1 begins (what the VAE encoded)
        start_frame = clips[k - 1][plan.condition_index : plan.condition_index + 1]
        assert torch.equal(result.starts[k], start_frame) and torch.equal(vae.encoded[k], start_frame)
        at = plan.start(k)
        for j, w in enumerate(weights.tolist()):
            if at + j < plan.total:
                expected = (1 - w) * clips[k - 1][plan.condition_index + j] + w * clips[k][j]
                assert torch.allclose(video[at + j], expected, rtol=0, atol=1e-6), (k, j)
        # the frames just outside the overlap are the clips' own
        assert torch.equal(video[at - 1], clips[k - 1][plan.condition_index - 1])
        if at + plan.overlap < plan.total:
            assert torch.equal(video[at + plan.overlap], clips[k][plan.overlap])
        # the blend is a real mix: the two clips differ there, and the joined frame is neither
        assert not torch.allclose(clips[k - 1][plan.condition_index], clips[k][0], atol=1e-3)
        # re-anchored: every continuation keeps the SOURCE picture's image tokens
        assert torch.equal(recorder.tokens(pack, k), recorder.tokens(pack, 0))
        assert not torch.equal(fake_clip.tokens(None, start_frame), recorder.tokens(pack, 0))
    assert torch.equal(video[: plan.start(1)], clips[0][: plan.start(1)])


def test_long_video_node_cuts_short_videos_and_unanchored_tokens_follow_the_clip(
    pack, tiny, fake_clip, monkeypatch, single_thread
):
    recorder = SampleRecorder(pack, monkeypatch)
    node = pack["long_video"].DynamiCrafterLongVideo
    with torch.no_grad():
        short = node.execute(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            pictures(1),
            5,
            4,
            pack["long_video"].MODE_CONTINUE,
            True,
            False,
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            1,
            1,
            7.5,
            0.0,
            -1.0,
            "crop",
        ).result[0]
        assert short.shape[0] == 5 and len(recorder.positives) == 1
        recorder.positives.clear()
        longer = node.execute(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            pictures(1),
            17,
            1,
            pack["long_video"].MODE_CONTINUE,
            False,
            True,
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            1,
            1,
            7.5,
            0.0,
            -1.0,
            "crop",
        ).result[0]
    assert longer.shape[0] == 17 and len(recorder.positives) == 2
    assert not torch.equal(recorder.tokens(pack, 1), recorder.tokens(pack, 0))


def test_return_to_source_mode_ends_every_clip_on_the_source(pack, tiny, fake_clip, single_thread):
    vae = RecordingVAE(tiny["vae"])
    long_video = pack["long_video"]
    source = pictures(1, seed=6)
    plan = ContinuationPlan(total=20, clip_frames=FRAMES, overlap=4)
    with pytest.raises(ValueError, match="512_interp checkpoint"):
        long_video.generate_long_video(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            vae,
            object(),
            source,
            plan,
            WIDTH,
            HEIGHT,
            0,
            "crop",
            settings(pack, steps=1),
            long_video.MODE_RETURN,
            True,
            False,
        )
    with torch.no_grad():
        result = long_video.generate_long_video(
            tiny["512_interp"],
            tiny["positive"],
            tiny["negative"],
            vae,
            object(),
            source,
            plan,
            WIDTH,
            HEIGHT,
            0,
            "crop",
            settings(pack, steps=1),
            long_video.MODE_RETURN,
            True,
            False,
        )
    assert result.video.shape[0] == 20
    # clip 0 is a loop of the source (encoded once); clip 1 goes from its start frame back to the source
    assert torch.equal(vae.encoded[0], source)
    assert torch.equal(vae.encoded[1], result.starts[1]) and torch.equal(vae.encoded[2], source)


# ------------------------------------------------------------------------- one graph, real encoders


@pytest.fixture(scope="module")
def interp_file(comfy_host, tmp_path_factory):
    from support.host_checkpoints import write_host_checkpoint

    root = tmp_path_factory.mktemp("long-video-models")
    write_host_checkpoint(root / "dynamicrafter_512_interp_v1.ckpt", "512_interp", manifest_path("512"), "ckpt")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(root), is_default=True)
    picture = np.zeros((90, 160, 3), dtype=np.uint8)
    picture[:, :80] = (220, 120, 40)
    picture[30:60, 100:140] = (40, 90, 230)
    Image.fromarray(picture).save(Path(comfy_host.folder_paths.get_input_directory()) / "dc_long.png")
    return "dynamicrafter_512_interp_v1.ckpt"


def test_graph_runs_both_nodes_with_the_real_loader(comfy_host, pack, interp_file):
    sampling = {"seed": 1, "steps": 1, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0}
    shared_inputs = {
        "positive": ["2", 0],
        "negative": ["3", 0],
        "vae": ["1", 2],
        "clip_vision": ["1", 3],
        "width": WIDTH,
        "height": HEIGHT,
        "fs": 0,
        "fit": "crop",
        **sampling,
    }
    prompt = {
        "1": {
            "class_type": "DynamiCrafterCheckpointLoader",
            "inputs": {"ckpt_name": interp_file, "variant": "auto", "weight_dtype": "default"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a flag in the wind", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "dc_long.png"}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["5", 0]}},
        "7": {"class_type": "ImageBatch", "inputs": {"image1": ["6", 0], "image2": ["4", 0]}},
        "8": {
            "class_type": "DynamiCrafterKeyframeChain",
            "inputs": {
                "model": ["1", 0],
                "keyframes": ["7", 0],
                "frames": FRAMES,
                "clip": ["1", 1],
                "segment_prompts": "\nthe flag turns back",
                **shared_inputs,
            },
        },
        "9": {
            "class_type": "DynamiCrafterLongVideo",
            "inputs": {
                "model": ["1", 0],
                "image": ["4", 0],
                "total_frames": 14,
                "overlap": 4,
                "mode": "return to source (512_interp)",
                "anchor_tokens": True,
                "match_colors": True,
                "clip_frames": FRAMES,
                **shared_inputs,
            },
        },
    }
    run = comfy_host.run_prompt(prompt, outputs=["8", "9"])
    assert tuple(run.output("8").shape) == (2 * (FRAMES - 1) + 1, HEIGHT, WIDTH, 3)
    assert tuple(run.output("9").shape) == (14, HEIGHT, WIDTH, 3)
