"""The pieces the long-video host tests share: sizes, stand-ins for CLIP vision and the VAE, tiny network
weights, and the original's interpolation goldens with the conditioning built from them
(``tests/host/nodes/long_video``; their fixtures are in its ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import load_file

from dynamicrafter.fixtures.demo import DEMO_VAE
from support.tiny_checkpoints import tiny_resampler_state_dict, tiny_unet_state_dict

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "parity_interp"
SCALE = 0.18215
TOL = 1e-4
"""Relative L2 of the final latents. The interpolation layout is more sensitive to float noise than i2v: the
original against itself with 2 threads instead of 1 moves by up to 2e-5 relative L2 and 1.6e-4 max |delta| / std
(config.json, noise_floor_original_2_threads_vs_1), so the element-wise bound is MAX_TOL."""
MAX_TOL = 5e-4
WIDTH, HEIGHT, FRAMES = 128, 64, 16
TINY_VAE = DEMO_VAE
"""The demo checkpoint's narrow SD VAE (``dynamicrafter/fixtures/demo.py``)."""


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


class RecordingVAE:
    """Delegates to a host VAE and records every picture it encodes."""

    def __init__(self, vae) -> None:
        self.vae, self.encoded = vae, []

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.encoded.append(pixels.clone())
        return self.vae.encode(pixels)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(samples)


def tiny_parts() -> dict[str, torch.Tensor]:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    vae = AutoencoderKL(ddconfig=TINY_VAE, embed_dim=4)
    g = torch.Generator().manual_seed(3)
    sd = {f"model.diffusion_model.{k}": v for k, v in tiny_unet_state_dict("512").items()}
    sd.update({f"image_proj_model.{k}": v for k, v in tiny_resampler_state_dict().items()})
    sd.update({f"first_stage_model.{k}": torch.randn(v.shape, generator=g) * 0.02 for k, v in vae.state_dict().items()})
    return sd


def pictures(count: int, seed: int = 0) -> torch.Tensor:
    """Smooth random IMAGE batch [count, HEIGHT, WIDTH, 3]."""
    coarse = torch.rand(count, 3, 4, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear").movedim(1, -1).contiguous()


def settings(pack, seed: int = 3, steps: int = 2, eta: float = 1.0):
    return pack["long_video"].SamplingSettings(seed=seed, steps=steps, cfg=7.5, eta=eta, guidance_rescale=-1.0)


class SampleRecorder:
    """Wraps SegmentSampler.sample to record the positive conditioning of each clip it finished."""

    def __init__(self, pack, monkeypatch) -> None:
        self.positives: list = []
        original = pack["long_video"].SegmentSampler.sample

        def sample(sampler, index, positive, negative, latent):
            out = original(sampler, index, positive, negative, latent)
            self.positives.append(positive)
            return out

        monkeypatch.setattr(pack["long_video"].SegmentSampler, "sample", sample)

    def tokens(self, pack, index: int) -> torch.Tensor:
        return self.positives[index][0][1][pack["family"].COND_IMAGE_TOKENS]


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
