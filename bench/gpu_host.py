"""GPU figures through the real ComfyUI host path: ModelPatcher, host attention, host offloading.

    python -m bench.gpu_host --comfyui .cache/comfyui --variant 1024 --weights bf16 --out $OUT/host_1024.json
    python -m bench.gpu_host --comfyui .cache/comfyui --variant 1024 --vram-cap-gb 8 ...   # low-VRAM run
    python -m bench.gpu_host --comfyui .cache/comfyui --smoke                              # CPU, seconds

One process per configuration (ComfyUI decides its memory policy at import). A full default run:
16 frames, 50 DDIM steps, CFG 7.5 with guidance rescale (the host batches cond and uncond, 100 UNet
passes), the pack's DynamiCrafter DDIM sampler; then the VAE decode of the 16 frames through the
host's VAE. Random weights in the real layout; peak VRAM is ``torch.cuda.max_memory_allocated``.
``--vram-cap-gb`` simulates a smaller card: the host's free-memory query is capped at that size
minus what is allocated, so it streams the weights it cannot keep (its low-VRAM mode), runs cond and
uncond separately and decodes the VAE in chunks, as it would on such a card. ``--compile`` wraps the
diffusion model in ``torch.compile`` through a ModelPatcher object patch.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PACK = "dynamicrafter_pack"
log = logging.getLogger("gpu_host")


def import_host(comfyui: Path, cpu: bool, cap_gb: float | None):
    """Import ComfyUI (CPU or GPU decided before ``comfy.model_management`` loads), optionally capped."""
    sys.path.insert(0, str(comfyui))
    from comfy.cli_args import args

    args.cpu = cpu
    import comfy.model_management as mm

    if cap_gb is not None:
        real_free = mm.get_free_memory

        def capped_free(dev=None, torch_free_too=False):
            cap = cap_gb * 2**30 - torch.cuda.memory_allocated()
            free = real_free(dev, torch_free_too)
            return (min(free[0], cap), min(free[1], cap)) if torch_free_too else min(free, cap)

        mm.get_free_memory = capped_free


def import_pack_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """The pack's host adapter and sampling modules, without the node registry (no UI deps needed)."""
    for name, path in ((PACK, ROOT), (f"{PACK}.nodes", ROOT / "nodes")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    return importlib.import_module(f"{PACK}.nodes.adapter.family"), importlib.import_module(
        f"{PACK}.nodes.adapter.ksampler"
    )


@torch.no_grad()
def build_model(model_mod, variant_name: str, weights: str, device: torch.device, smoke: bool):
    import comfy.model_management as mm
    import comfy.model_patcher

    from bench.models import randomize_
    from dynamicrafter.config import get_variant
    from dynamicrafter.fixtures.demo import DEMO_RESAMPLER, DEMO_UNET

    variant = get_variant(variant_name)
    unet = dataclasses.replace(DEMO_UNET, default_fs=variant.unet.default_fs) if smoke else variant.unet
    resampler = DEMO_RESAMPLER if smoke else variant.resampler
    config = model_mod.DynamiCrafterConfig(variant, unet, resampler)
    storage = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp8": torch.float8_e4m3fn}[
        weights
    ]
    compute = mm.unet_manual_cast(storage, device, config.supported_inference_dtypes)
    config.set_inference_dtype(storage, compute)
    model = config.get_model(device=device)
    randomize_(model.diffusion_model)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
    return patcher, variant, compute or storage


def conditioning(model_mod, variant, frames: int, latent: tuple[int, int], context: int, clip_width: int):
    g = torch.Generator().manual_seed(1)
    h, w = latent
    concat = torch.randn(1, 4, h, w, generator=g).repeat(frames, 1, 1, 1)
    shared = {model_mod.COND_CONCAT: concat, model_mod.COND_FRAMES: frames, model_mod.COND_FS: variant.default_fs}
    positive = [
        [
            torch.randn(1, 77, context, generator=g),
            {**shared, model_mod.COND_IMAGE_TOKENS: torch.randn(1, 257, clip_width, generator=g)},
        ]
    ]
    negative = [
        [
            torch.randn(1, 77, context, generator=g),
            {**shared, model_mod.COND_IMAGE_TOKENS: torch.randn(1, 257, clip_width, generator=g)},
        ]
    ]
    return positive, negative


def run_default(patcher, variant, sampling, model_mod, steps: int, frames: int, latent, context, clip_width):
    import comfy.sample

    model = patcher.clone()
    model.set_model_sampler_post_cfg_function(
        sampling.video_guidance_rescale(variant.sampling.guidance_rescale, variant.schedule.prediction)
    )
    positive, negative = conditioning(model_mod, variant, frames, latent, context, clip_width)
    samples = torch.zeros(frames, 4, *latent)
    noise = comfy.sample.prepare_noise(samples, 0)
    sigmas = sampling.dynamicrafter_sigmas(model.get_model_object("model_sampling"), steps, variant.sampling.spacing)
    sampler = sampling.DynamiCrafterKSampler(variant.sampling.eta, variant.schedule.dynamic_rescale)
    return comfy.sample.sample_custom(
        model, noise, variant.sampling.cfg, sampler, sigmas, positive, negative, samples, disable_pbar=True, seed=0
    )


def random_vae(smoke: bool):
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {
        "double_z": True,
        "z_channels": 4,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32 if smoke else 128,
        "ch_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, 0.02)
    return comfy.sd.VAE(sd=vae.state_dict(), config={"params": {"ddconfig": ddconfig, "embed_dim": 4}})


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", type=Path, default=ROOT / ".cache" / "comfyui")
    parser.add_argument("--variant", default="512")
    parser.add_argument("--weights", default="bf16", choices=("bf16", "fp16", "fp32", "fp8"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--vram-cap-gb", type=float, default=None, help="pretend only this much VRAM is free (host low-VRAM streaming)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the diffusion model")
    parser.add_argument("--smoke", action="store_true", help="tiny network on CPU, to check the script")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cuda = torch.cuda.is_available() and not args.smoke
    import_host(args.comfyui, cpu=not cuda, cap_gb=args.vram_cap_gb if cuda else None)
    import comfy.model_management as mm

    model_mod, sampling = import_pack_modules()
    device = mm.get_torch_device()
    patcher, variant, compute = build_model(model_mod, args.variant, args.weights, device, args.smoke)
    if args.compile:
        patcher.add_object_patch("diffusion_model", torch.compile(patcher.get_model_object("diffusion_model")))
    frames = variant.frames
    latent = (8, 16) if args.smoke else variant.latent_size
    context, clip_width = (1024, 1280)
    steps = 2 if args.smoke else args.steps
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_default(patcher, variant, sampling, model_mod, 1, frames, latent, context, clip_width)  # warm-up
    warmup_s = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    samples = run_default(patcher, variant, sampling, model_mod, steps, frames, latent, context, clip_width)
    if cuda:
        torch.cuda.synchronize()
    run_s = time.perf_counter() - start
    run_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    tflop = {"256": 4.904, "512": 12.603, "512_interp": 12.603, "1024": 52.336}[args.variant] * 2 * steps

    vae = random_vae(args.smoke)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    frames_out = vae.decode(samples)
    if cuda:
        torch.cuda.synchronize()
    decode_s = time.perf_counter() - start
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke)",
        "variant": args.variant,
        "weights": args.weights,
        "compute": str(compute),
        "steps": steps,
        "vram_cap_gb": args.vram_cap_gb,
        "attention": mm.xformers_enabled()
        and "xformers"
        or (mm.pytorch_attention_enabled() and "pytorch sdpa" or "other"),
        "compile": args.compile,
        "warmup_s": round(warmup_s, 1),
        "run_s": round(run_s, 2),
        "run_peak_gib": run_peak and round(run_peak, 2),
        "achieved_tflops": None if args.smoke else round(tflop / run_s, 1),
        "vae_decode_s": round(decode_s, 2),
        "vae_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "frames_decoded": int(frames_out.shape[0]),
        "finite": bool(torch.isfinite(samples).all()),
    }
    log.info(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
