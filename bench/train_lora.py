"""LoRA training step figures through the real ComfyUI host path: time per step and peak memory.

    python -m bench.train_lora --comfyui .cache/comfyui-0.33.0 --network smoke           # CPU, seconds
    python -m bench.train_lora --comfyui .cache/comfyui-0.33.0 --network full --latent 8 16   # CPU, reduced size
    python -m bench.train_lora --comfyui .cache/comfyui --network full --weights bf16      # GPU: 512 x 320 x 16

One process per configuration (run with and without gradient checkpointing): random weights in the real layout
as a host ModelPatcher, the pack's Train LoRA pieces (the host's LoRA training adapters on the attention layers and
the Resampler, AdamW on the adapters only, the original objective through ``DynamiCrafterNet``), synthetic encoded
clips (no encoders). Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU it is the process's
peak resident set (weights, activations and Python together), so compare CPU figures only with each other.
Figures are printed (and written as JSON with ``--out``), never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.gpu_host import ROOT, build_model, import_host, import_pack_modules

PACK = "dynamicrafter_pack"


def clips_for(dataset_mod, variant, latent: tuple[int, int], context: int, clip_width: int, count: int):
    """Encoded clips with random contents, shaped as the Training Clips node makes them."""
    g = torch.Generator().manual_seed(0)
    clips = dataset_mod.TrainingClips(variant.name, latent[1] * 8, latent[0] * 8)
    frames = variant.frames
    for _ in range(count):
        clips.latents.append(torch.randn(4, frames, *latent, generator=g) * 5)
        clips.texts.append(torch.randn(77, context, generator=g))
        clips.clip_frames.append(torch.randn(frames, 257, clip_width, generator=g))
        clips.fs.append(variant.default_fs)
    clips.empty_text = torch.randn(1, 77, context, generator=g)
    clips.clip_blank = torch.randn(1, 257, clip_width, generator=g)
    return clips


def run_one(args) -> dict:
    cuda = torch.cuda.is_available() and args.network != "smoke"
    import_host(args.comfyui, cpu=not cuda, cap_gb=None)
    import comfy.model_management as mm

    family, _ = import_pack_modules()
    adapters = importlib.import_module(f"{PACK}.nodes.training.adapters")
    loop = importlib.import_module(f"{PACK}.nodes.training.loop")
    dataset = importlib.import_module(f"{PACK}.nodes.training.dataset")
    device = mm.get_torch_device()
    patcher, variant, _ = build_model(family, args.variant, args.weights, device, args.network == "smoke")
    latent = tuple(args.latent) if args.latent else ((8, 16) if args.network == "smoke" else variant.latent_size)
    context, clip_width = (48, 40) if args.network == "smoke" else (1024, 1280)
    if args.network == "smoke":
        clip_width = patcher.model.model_config.unet_config["resampler"].embedding_dim
        context = patcher.model.model_config.unet_config["unet"].context_dim
    clips = clips_for(dataset, variant, latent, context, clip_width, args.batch)
    with torch.inference_mode(False):
        patcher.model.requires_grad_(False)
        params = adapters.create_adapters(
            patcher, set(args.targets.split("+")), args.rank, float(args.rank), {}, torch.Generator().manual_seed(0)
        )
        mm.load_models_gpu([patcher], memory_required=1e20, force_full_load=True)
        trainable = adapters.trainable(params)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        loop.train(patcher.model, clips, trainable, 1, 1e-4, args.batch, 0, args.dtype, args.checkpointing)  # warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loop.train(patcher.model, clips, trainable, args.steps, 1e-4, args.batch, 1, args.dtype, args.checkpointing)
        if cuda:
            torch.cuda.synchronize()
        step_s = (time.perf_counter() - start) / args.steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "network": args.network,
        "reduced_size": args.network != "full" or latent != variant.latent_size,
        "variant": args.variant,
        "pixels": [latent[0] * 8, latent[1] * 8, variant.frames],
        "weights": args.weights,
        "training_dtype": args.dtype,
        "gradient_checkpointing": args.checkpointing,
        "batch": args.batch,
        "rank": args.rank,
        "targets": args.targets,
        "adapter_parameters": sum(p.numel() for p in trainable),
        "step_s": round(step_s, 3),
        "peak_gib": round(peak, 3),
        "peak_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "rss_before_training_gib": None if cuda else round(rss_before, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", type=Path, default=ROOT / ".cache" / "comfyui")
    parser.add_argument("--variant", default="512")
    parser.add_argument("--network", choices=("smoke", "full"), default="smoke")
    parser.add_argument("--latent", type=int, nargs=2, help="latent height and width (default: the variant's)")
    parser.add_argument("--weights", default="fp32", choices=("bf16", "fp16", "fp32", "fp8"))
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="training autocast")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="attention+resampler")
    parser.add_argument("--checkpointing", choices=("on", "off", "both"), default="both")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.one:
        args.checkpointing = args.checkpointing == "on"
        print(json.dumps(run_one(args)))
        return
    results = []
    for mode in ("off", "on") if args.checkpointing == "both" else (args.checkpointing,):
        argv = [a for a in sys.argv[1:] if a not in ("both", "on", "off", "--checkpointing")]
        out = subprocess.run(
            [sys.executable, "-m", "bench.train_lora", *argv, "--checkpointing", mode, "--one"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
