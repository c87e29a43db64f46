"""Sampler controls in the real host: separate text and image guidance (sampler option and GUIDER), partial
denoise and frame pinning, against the ORIGINAL code's goldens (tests/data/parity_controls), with the stock
samplers too, and the queue-time refusal of bad values.

The network is the small_512 parity fixture (tests/data/parity) loaded through the pack's loader code; text and CLIP
outputs are the goldens' stand-ins given directly, as in test_long_video.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.checkpoint import checkpoint_from_state_dict
from dynamicrafter.frames import fold_frames, unfold_frames
from support.parity_data import relative_error, relative_l2
from support.reference_data import PARITY_SMALL_512

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "parity_controls"
CONFIG = json.loads((GOLDENS / "config.json").read_text())
SCALE, TOL, FRAMES = 0.18215, 1e-4, 16
SEED = CONFIG["seed"]
FS = CONFIG["sampling"]["fs"]


@pytest.fixture(scope="module")
def pack(comfy_host):
    modules = {
        name: comfy_host.import_pack_module(f"nodes.{name}")
        for name in ("controls", "model", "sampler_nodes", "sampling", "host_model")
    }
    import comfy_extras.nodes_custom_sampler as custom

    modules["custom"] = custom
    return modules


def load_fixture(pack, variant: str):
    """The small_512 parity network (tests/data/parity) through the pack's loader code, as ``variant``."""
    folder = PARITY_SMALL_512
    sd = {**load_file(str(folder / "weights.safetensors")), **load_file(str(folder / "buffers.safetensors"))}
    return pack["host_model"].model_from_checkpoint(
        checkpoint_from_state_dict(folder / "weights.safetensors", sd, variant), "fp32"
    )


@pytest.fixture(scope="module")
def fixture_model(pack):
    return load_fixture(pack, "512")


@pytest.fixture(scope="module")
def interp_model(pack):
    return load_fixture(pack, "512_interp")


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / f"{name}.safetensors"))


def conds(pack, g: dict[str, torch.Tensor]):
    """Positive / negative exactly as the image-to-video node builds them, from the golden stand-ins."""
    m = pack["model"]
    shared = {
        m.COND_CONCAT: g["latent_first_raw"].repeat(FRAMES, 1, 1, 1),
        m.COND_FRAMES: FRAMES,
        m.COND_FS: FS,
        m.COND_TASK: "i2v",
    }
    return (
        [[g["text_emb"], {**shared, m.COND_IMAGE_TOKENS: g["image_embeds"]}]],
        [[g["uc_text_emb"], {**shared, m.COND_IMAGE_TOKENS: g["uc_image_embeds"]}]],
    )


def host_latent(video: torch.Tensor) -> torch.Tensor:
    """[1, 4, T, h, w] model scale -> the host's frames-as-batch VAE-scale latent."""
    return fold_frames(video / SCALE).contiguous()


def as_video(latent: torch.Tensor) -> torch.Tensor:
    return unfold_frames(latent * SCALE, FRAMES)


def sample(pack, model, g, latent: dict, eta: float, **controls) -> torch.Tensor:
    positive, negative = conds(pack, g)
    with torch.no_grad():
        return (
            pack["sampler_nodes"]
            .DynamiCrafterSampler.execute(
                model,
                positive,
                negative,
                latent,
                SEED,
                CONFIG["sampling"]["steps"],
                CONFIG["sampling"]["cfg"],
                eta,
                CONFIG["sampling"]["guidance_rescale"],
                "auto",
                "auto",
                **controls,
            )
            .result[0]["samples"]
        )


def call_node(node_class, **inputs):
    """A host node's outputs, V1 (FUNCTION) or V3 (execute) alike."""
    if hasattr(node_class, "FUNCTION"):
        return getattr(node_class(), node_class.FUNCTION)(**inputs)
    return node_class.execute(**inputs).result


def empty() -> dict:
    return {"samples": torch.zeros(FRAMES, 4, 8, 16)}


def assert_matches(ours: torch.Tensor, expected: torch.Tensor) -> None:
    l2, worst = relative_l2(ours, expected), relative_error(ours, expected)
    print(f"relative L2 {l2:.2e}, max |ours - original| / std {worst:.2e}")
    assert l2 < TOL and worst < TOL


# ------------------------------------------------------------------------------ separate image guidance
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
    nodes, custom = pack["sampler_nodes"], pack["custom"]
    guider = nodes.DynamiCrafterImageGuider.execute(
        fixture_model, positive, negative, CONFIG["sampling"]["cfg"], CONFIG["runs"]["multicond"]["cfg_img"], -1.0
    ).result[0]
    sampler = nodes.DynamiCrafterDDIMSampler.execute(fixture_model, 1.0, "auto").result[0]
    sigmas = nodes.DynamiCrafterScheduler.execute(fixture_model, CONFIG["sampling"]["steps"], "auto").result[0]
    noise = call_node(custom.RandomNoise, noise_seed=SEED)[0]
    with torch.no_grad():
        out = call_node(
            custom.SamplerCustomAdvanced,
            noise=noise,
            guider=guider,
            sampler=sampler,
            sigmas=sigmas,
            latent_image=empty(),
        )[0]["samples"]
    assert_matches(as_video(out), g["eta1.final"])


def test_image_guider_drives_a_stock_sampler(pack, fixture_model, single_thread):
    g = golden("multicond")
    positive, negative = conds(pack, g)
    nodes, custom = pack["sampler_nodes"], pack["custom"]
    guider = nodes.DynamiCrafterImageGuider.execute(fixture_model, positive, negative, 7.5, 2.5, -1.0).result[0]
    sampler = call_node(custom.KSamplerSelect, sampler_name="euler")[0]
    sigmas = call_node(custom.BasicScheduler, model=fixture_model, scheduler="normal", steps=3, denoise=1.0)[0]
    with torch.no_grad():
        out = call_node(
            custom.SamplerCustomAdvanced,
            noise=call_node(custom.RandomNoise, noise_seed=1)[0],
            guider=guider,
            sampler=sampler,
            sigmas=sigmas,
            latent_image=empty(),
        )[0]["samples"]
    assert out.shape == (FRAMES, 4, 8, 16) and torch.isfinite(out).all() and out.abs().max() > 0


# ------------------------------------------------------------------------------ partial denoise
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_partial_denoise_equals_the_original_started_part_way(pack, fixture_model, single_thread, eta):
    g = golden("partial")
    out = sample(pack, fixture_model, g, {"samples": host_latent(g["start_latent"])}, eta, denoise=0.6)
    assert_matches(as_video(out), g[f"eta{eta:g}.final"])


def test_partial_denoise_in_sampler_custom_advanced_equals_the_original(pack, fixture_model, single_thread):
    """Stock CFGGuider (video guidance rescale patched in), the DDIM sampler and the Scheduler's denoise."""
    g = golden("partial")
    positive, negative = conds(pack, g)
    nodes, custom = pack["sampler_nodes"], pack["custom"]
    patched = nodes.DynamiCrafterGuidanceRescale.execute(fixture_model, -1.0).result[0]
    guider = call_node(custom.CFGGuider, model=patched, positive=positive, negative=negative, cfg=7.5)[0]
    sampler = nodes.DynamiCrafterDDIMSampler.execute(fixture_model, 1.0, "auto").result[0]
    sigmas = nodes.DynamiCrafterScheduler.execute(fixture_model, CONFIG["sampling"]["steps"], "auto", 0.6).result[0]
    with torch.no_grad():
        out = call_node(
            custom.SamplerCustomAdvanced,
            noise=call_node(custom.RandomNoise, noise_seed=SEED)[0],
            guider=guider,
            sampler=sampler,
            sigmas=sigmas,
            latent_image={"samples": host_latent(g["start_latent"])},
        )[0]["samples"]
    assert_matches(as_video(out), g["eta1.final"])


def test_full_runs_start_from_noise_partial_runs_from_the_latent(pack, fixture_model):
    sampling = pack["sampling"]
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


# ------------------------------------------------------------------------------ frame pinning
def pinned_latent(pack, g, pin: str) -> dict:
    return (
        pack["controls"]
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
    assert keep == pack["controls"].parse_frame_list(pin, FRAMES)
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
    validation = comfy_host.import_pack_module("nodes.validation")
    with pytest.raises(validation.InputError, match="pin: frame 16 is outside"):
        pack["controls"].DynamiCrafterPinFrames.execute(empty(), "16", FRAMES)


# ------------------------------------------------------------------------------ queue-time checks
def prompt_with(class_type: str, inputs: dict) -> dict:
    return {"1": {"class_type": class_type, "inputs": inputs}}


@pytest.mark.parametrize(
    "class_type, inputs, message",
    [
        ("DynamiCrafterSampler", {"image_cfg": math.nan}, "image_cfg is nan, not a number"),
        ("DynamiCrafterSampler", {"image_cfg": -1.5}, "image_cfg = -1.5 is below its minimum -1.0"),
        ("DynamiCrafterSampler", {"image_cfg": 31.0}, "image_cfg = 31.0 is above its maximum 30.0"),
        ("DynamiCrafterSampler", {"denoise": 1.5}, "denoise = 1.5 is above its maximum 1.0"),
        ("DynamiCrafterSampler", {"denoise": math.inf}, "denoise is inf, not a number"),
        ("DynamiCrafterScheduler", {"denoise": math.nan}, "denoise is nan, not a number"),
        ("DynamiCrafterImageGuider", {"image_cfg": math.nan}, "image_cfg is nan, not a number"),
        ("DynamiCrafterImageGuider", {"image_cfg": -1.0}, "image_cfg = -1.0 is below its minimum 0.0"),
        ("DynamiCrafterImageGuider", {"cfg": 0.5}, "cfg = 0.5 is below its minimum 1.0"),
        ("DynamiCrafterPinFrames", {"pin": "16"}, "pin: frame 16 is outside"),
        ("DynamiCrafterPinFrames", {"pin": "first"}, "not a frame"),
        ("DynamiCrafterPinFrames", {"pin": " , "}, "no frame"),
        ("DynamiCrafterPinFrames", {"pin": "8", "frames": 8}, "outside"),
        ("DynamiCrafterPinFrames", {"frames": 65}, "frames = 65 is above its maximum 64"),
        ("DynamiCrafterImageToVideo", {"noise_augmentation": math.nan}, "noise_augmentation is nan, not a number"),
        ("DynamiCrafterInterpolation", {"noise_augmentation": 2.0}, "noise_augmentation = 2.0 is above its maximum"),
        ("DynamiCrafterInterpolation", {"end_image_tokens": -0.1}, "end_image_tokens = -0.1 is below its minimum"),
        (
            "DynamiCrafterInterpolation",
            {"end_token_schedule": "sideways"},
            "end_token_schedule = 'sideways' is not one of its choices ('constant', 'ramp')",
        ),
        (
            "DynamiCrafterKeyframeChain",
            {"end_token_schedule": "sideways"},
            "end_token_schedule = 'sideways' is not one",
        ),
        ("DynamiCrafterKeyframeChain", {"end_image_tokens": math.nan}, "end_image_tokens is nan, not a number"),
        ("DynamiCrafterKeyframeChain", {"width": 8192}, "width = 8192 is above its maximum 4096"),
    ],
)
def test_bad_control_values_are_refused_at_queue_time(pack, comfy_host, class_type, inputs, message):
    node = comfy_host.nodes.NODE_CLASS_MAPPINGS[class_type]
    values = {
        "image_cfg": -1.0,
        "denoise": 1.0,
        "cfg": 7.5,
        "guidance_rescale": -1.0,
        "pin": "0",
        "frames": 16,
        "width": 512,
        "height": 320,
        **inputs,
    }
    accepted = set(node.INPUT_TYPES()["required"]) | set(node.INPUT_TYPES().get("optional", {}))
    prompt = prompt_with(class_type, {k: v for k, v in values.items() if k in accepted})
    ok, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
    assert not ok and message in json.dumps(errors)


# ------------------------------------------------------------------------------ conditioning-image controls
class StandInEncoders:
    """A VAE and a CLIP vision stand-in (fixed functions of the picture) that record what they were shown."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(11)
        self.vae_weight = torch.randn(4, 3, generator=g)
        self.clip_weight = torch.randn(96, 257 * 40, generator=g) / 96**0.5
        self.uncond = torch.randn(1, 257, 40, generator=g)
        self.vae_seen: list[torch.Tensor] = []
        self.clip_seen: list[torch.Tensor] = []

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.vae_seen.append(pixels.clone())
        pooled = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.einsum("oc,bchw->bohw", self.vae_weight, pooled) * 5

    def tokens(self, clip_vision, image: torch.Tensor) -> torch.Tensor:
        self.clip_seen.append(image.clone())
        pooled = torch.nn.functional.adaptive_avg_pool2d(image.movedim(-1, 1).float(), (4, 8)).flatten(1)
        return (pooled @ self.clip_weight).view(-1, 257, 40)


@pytest.fixture
def encoders(comfy_host, monkeypatch) -> StandInEncoders:
    fake = StandInEncoders()
    conditioning = comfy_host.import_pack_module("nodes.conditioning")
    monkeypatch.setattr(conditioning, "image_tokens", fake.tokens)
    monkeypatch.setattr(conditioning, "unconditional_tokens", lambda clip_vision: fake.uncond)
    return fake


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

    from dynamicrafter.image_controls import blend_frame_tokens, end_token_weights
    from dynamicrafter.sampler import DDIMSettings, ddim_sample
    from dynamicrafter.schedule import make_schedule
    from support.parity_data import FixtureSet

    g = golden("multicond")
    positive, negative, latent = interpolation(
        comfy_host, encoders, g, end_image_tokens=0.6, end_token_schedule=schedule
    )
    model_module = pack["model"]
    with torch.no_grad():
        out = (
            pack["sampler_nodes"]
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
            pack["sampler_nodes"]
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
