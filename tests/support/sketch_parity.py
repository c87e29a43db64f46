"""The sketch-guidance parity setup of ``tests/data/parity_sketch``, rebuilt on the pack's side.

The generator there draws the weights and inputs from seeded generators instead of storing them (they would be
tens of MB); this module repeats those draws exactly (same torch, same order), checked by the goldens'
fingerprint, and builds the host model, the host-loaded sketch ControlNet and the conditioning from them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import load_file

from dynamicrafter.checkpoint import checkpoint_from_state_dict

GOLDENS = Path(__file__).resolve().parent.parent / "data" / "parity_sketch"
CONFIG = json.loads((GOLDENS / "config.json").read_text())
FRAMES = CONFIG["unet"]["temporal_length"]


def goldens() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "sketch.safetensors"))


def random_weights(part: str) -> dict[str, torch.Tensor]:
    """The generator's ``_random_weights`` for ``part`` (unet / controlnet / resampler), from the recorded shapes."""
    g = torch.Generator().manual_seed(CONFIG["weight_seeds"][part])
    shapes = CONFIG["keys"][part]
    return {k: torch.randn(shapes[k], generator=g) * CONFIG["weight_scale"] for k in sorted(shapes)}


def inputs() -> dict[str, torch.Tensor]:
    """The generator's ``_inputs``: the same draws in the same order."""
    frames, latent, hint = FRAMES, 4, 32
    g = torch.Generator().manual_seed(CONFIG["input_seed"])
    return {
        "x_noisy": torch.randn(1, 4, frames, latent, latent, generator=g),
        "c_concat": torch.randn(1, 4, frames, latent, latent, generator=g),
        "text": torch.randn(1, 77, 1024, generator=g),
        "uc_text": torch.randn(1, 77, 1024, generator=g),
        "clip": torch.randn(1, 257, 40, generator=g),
        "uc_clip": torch.randn(1, 257, 40, generator=g),
        "hint": torch.rand(1, 1, frames, hint, hint, generator=g),
    }


def fingerprint(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.tensor(
        [[t.double().sum(), t.double().square().sum(), t.flatten()[0]] for _, t in sorted(tensors.items())],
        dtype=torch.float64,
    )


def checkpoint():
    """The parity UNet + Resampler as a pack checkpoint (ToonCrafter's 512_interp layout: v-prediction, zero
    terminal SNR)."""
    sd = {f"model.diffusion_model.{k}": v for k, v in random_weights("unet").items()}
    sd.update({f"image_proj_model.{k}": v for k, v in random_weights("resampler").items()})
    return checkpoint_from_state_dict("tooncrafter_sketch_parity.safetensors", sd, "512_interp")


def sketch_images(hint: torch.Tensor) -> torch.Tensor:
    """IMAGE frames whose inverted grey value is ``hint`` ``[1, 1, T, H, W]``: dark lines on white, as drawn."""
    return (1.0 - rearrange(hint, "b c t h w -> (b t) h w c")).expand(-1, -1, -1, 3).contiguous()


def conditioning(model_module, data: dict[str, torch.Tensor]):
    """Positive / negative CONDITIONING as the pack's conditioning nodes build them, from the golden inputs."""
    concat = rearrange(data["c_concat"], "b c t h w -> (b t) c h w") / 0.18215  # the model scales it back in
    shared = {
        model_module.COND_CONCAT: concat,
        model_module.COND_FRAMES: FRAMES,
        model_module.COND_FS: CONFIG["fs"],
        model_module.COND_TASK: "interp",
    }
    return (
        [[data["text"], {**shared, model_module.COND_IMAGE_TOKENS: data["clip"]}]],
        [[data["uc_text"], {**shared, model_module.COND_IMAGE_TOKENS: data["uc_clip"]}]],
    )


def model_output(comfy_host, model, conditioning, x_noisy: torch.Tensor, timestep: int) -> torch.Tensor:
    """One model call through the host's own machinery (cond processing, ControlNet pre-run and residuals,
    ``calc_cond_batch``), returned as the network's raw output ``[1, 4, T, h, w]`` for the DDPM ``x_noisy``."""
    import comfy.sampler_helpers
    import comfy.samplers

    sampling = comfy_host.import_pack_module("nodes.adapter.ksampler")
    sigma = model.model.model_sampling.sigmas[timestep].float()
    x_k = rearrange(x_noisy, "b c t h w -> (b t) c h w") * math.sqrt(float(sigma) ** 2 + 1)
    conds = {"positive": comfy.sampler_helpers.convert_cond(conditioning)}
    options = model.model_options
    base, conds, loaded = comfy.sampler_helpers.prepare_sampling(model, x_k.shape, conds, options)
    try:
        model.pre_run()
        conds = comfy.samplers.process_conds(base, x_k, conds, "cpu")
        with torch.no_grad():
            denoised = comfy.samplers.calc_cond_batch(
                base, [conds["positive"]], x_k, sigma.expand(x_k.shape[0]), options
            )[0]
    finally:
        for cond in conds["positive"]:
            if "control" in cond:
                cond["control"].cleanup()
        comfy.sampler_helpers.cleanup_models(conds, loaded)
    raw = sampling.raw_output("v", x_k, denoised, float(sigma))
    return rearrange(raw, "(b t) c h w -> b c t h w", t=FRAMES)
