"""VAE decode of a 16-frame video through ComfyUI's own ``comfy.sd.VAE`` (SD1.5 KL-f8 layout).

    python -m bench.vae_bench                       # CPU: 256 and 512, fp32, 1 frame timed, x16 EXTRAPOLATED
    python -m bench.vae_bench --variants 512 1024 --modes bf16 fp32 --frames 16      # a GPU

The state dict is a full-size random SD1.5 VAE (every key of the real file); ComfyUI detects the
architecture from it, as it does for a real checkpoint. DynamiCrafter decodes frame by frame
(perframe_ae), so decode time is linear in frames: with ``--frames`` below 16 the 16-frame time is
extrapolated and the row says so. ComfyUI is found through ``--comfyui``, ``COMFYUI_DIR`` or the
project's ``.cache/comfyui``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import torch

from bench.flops import SPEC_VAE_DECODE_TFLOP, count_flops
from bench.measure import CallTimer, PeakMemory, environment, peak_tflops, throughput
from bench.models import randomize_
from bench.report import REPO_ROOT, RESULTS_DIR, gib, table, write_json
from dynamicrafter.config import VARIANTS, get_variant

log = logging.getLogger("vae_bench")

SD_VAE_CONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
"""SD1.5's KL-f8 autoencoder (DynamiCrafter's first_stage_config), ~83.7 M parameters."""
SMOKE_VAE_CONFIG = {**SD_VAE_CONFIG, "ch": 32, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1}
VIDEO_FRAMES = 16
VAE_MODES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def import_comfy(comfyui: str | None, cpu: bool) -> ModuleType:
    """``comfy.sd`` from the ComfyUI folder; ``--cpu`` must be set before model_management loads."""
    folder = Path(comfyui or os.environ.get("COMFYUI_DIR") or REPO_ROOT / ".cache" / "comfyui")
    if not (folder / "comfy" / "sd.py").is_file():
        raise SystemExit(f"ComfyUI not found at {folder}: give --comfyui or COMFYUI_DIR")
    sys.path.insert(0, str(folder))
    from comfy.cli_args import args

    args.cpu = cpu
    import comfy.model_management  # noqa: F401  (decides the device now)
    import comfy.sd

    return comfy.sd


def random_vae_state_dict(ddconfig: dict) -> dict[str, torch.Tensor]:
    """A state dict with every key and shape of the real SD VAE file, filled with random values."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    with torch.device("meta"):
        model = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    return randomize_(model.to_empty(device="cpu")).state_dict()


def decode_flops(ddconfig: dict, latent: tuple[int, int], frames: int) -> float:
    """FLOPs of ``decode`` on a meta-device copy. ComfyUI's sliced attention asks for the free memory
    of the tensors' device, which meta has none of: report plenty, so it runs unsliced."""
    import comfy.model_management
    from comfy.ldm.models.autoencoder import AutoencoderKL

    with torch.device("meta"):
        model = AutoencoderKL(ddconfig=ddconfig, embed_dim=4).eval()
        z = torch.empty(frames, 4, *latent)
    with mock.patch.object(comfy.model_management, "get_free_memory", lambda *_, **__: 1 << 50):
        return count_flops(model, lambda: model.decode(z)).total


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", help="ComfyUI folder (default: $COMFYUI_DIR, then .cache/comfyui)")
    parser.add_argument("--cpu", action="store_true", default=not cuda, help="run ComfyUI with --cpu")
    parser.add_argument(
        "--variants", nargs="+", choices=sorted(VARIANTS), default=["512", "1024"] if cuda else ["256", "512"]
    )
    parser.add_argument("--modes", nargs="+", choices=sorted(VAE_MODES), default=["bf16", "fp32"] if cuda else ["fp32"])
    parser.add_argument(
        "--frames",
        type=int,
        default=VIDEO_FRAMES if cuda else 1,
        help="frames decoded in the timed call; below 16 the video time is EXTRAPOLATED",
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny VAE (seconds; not a real figure)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/vae_<device>.json)")
    return parser.parse_args(argv)


def benchmark_vae(
    sd_module: ModuleType, ddconfig: dict, variants: list[str], modes: list[str], frames: int, smoke: bool
) -> list[dict[str, Any]]:
    """Decode ``frames`` latents of each variant's size per dtype; one row per (mode, variant)."""
    state_dict = random_vae_state_dict(ddconfig)
    rows = []
    for mode in modes:
        # A real file is detected from its keys; the smoke VAE is not SD-shaped, so it gets its config.
        config = {"params": {"ddconfig": ddconfig, "embed_dim": 4}} if smoke else None
        vae = sd_module.VAE(sd=state_dict, config=config, dtype=VAE_MODES[mode])
        device = torch.device(vae.device)
        for variant in variants:
            latent = (8, 16) if smoke else get_variant(variant).latent_size
            flops_video = decode_flops(ddconfig, latent, VIDEO_FRAMES)
            z = torch.randn(frames, 4, *latent)
            timer = CallTimer(device)
            with torch.inference_mode():
                vae.decode(z[:1])  # warm-up: loads the model to its device, primes kernels
                with PeakMemory(device) as memory:
                    timer(partial(vae.decode, z))
            seconds = timer.seconds()[0]
            cpu_seconds = timer.cpu_seconds()[0] if device.type == "cpu" else None
            video_s = seconds * VIDEO_FRAMES / frames
            rate = throughput(flops_video, video_s, peak_tflops(device, mode))
            label = f"{variant}{' SMOKE' if smoke else ''}"
            rows.append(
                {
                    "variant": label,
                    "mode": mode,
                    "device": str(device),
                    "frames_timed": frames,
                    "decode_s": seconds,
                    "decode_cpu_s": cpu_seconds,
                    "video_16f_s": video_s,
                    "basis": "measured" if frames == VIDEO_FRAMES else f"EXTRAPOLATED x{VIDEO_FRAMES}/{frames}",
                    "tflop_16f": flops_video / 1e12,
                    "spec_tflop_16f": None if smoke else SPEC_VAE_DECODE_TFLOP[variant],
                    "tflops": rate.tflops,
                    "fraction_of_peak": rate.fraction_of_peak,
                    "peak_gib": gib(memory.peak_bytes),
                    "peak_delta_gib": gib(memory.delta_bytes),
                    "load_1m": os.getloadavg()[0],
                }
            )
            log.info("%s %s: %.2f s for %d frames", label, mode, seconds, frames)
        del vae
    return rows


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sd_module = import_comfy(args.comfyui, args.cpu)
    ddconfig = SMOKE_VAE_CONFIG if args.smoke else SD_VAE_CONFIG
    rows = benchmark_vae(sd_module, ddconfig, args.variants, args.modes, args.frames, args.smoke)
    env = environment(torch.device(rows[0]["device"]))
    print(f"\nComfyUI VAE decode (comfy.sd.VAE, SD1.5 layout, random weights); {env['device']}, torch {env['torch']}")
    print(
        table(
            rows,
            (
                "variant",
                "mode",
                "frames_timed",
                "decode_s",
                "decode_cpu_s",
                "video_16f_s",
                "basis",
                "tflop_16f",
                "spec_tflop_16f",
                "tflops",
                "fraction_of_peak",
                "peak_gib",
                "peak_delta_gib",
                "load_1m",
            ),
        )
    )
    out = args.out or RESULTS_DIR / f"vae_{env['device_type']}{'_smoke' if args.smoke else ''}.json"
    write_json(out, {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "runs": rows})


if __name__ == "__main__":
    main()
