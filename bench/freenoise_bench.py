"""The two long-video modes side by side: FreeNoise in one pass against crossfaded 16-frame clips.

    python -m bench.freenoise_bench --threads 1                  # CPU: the parity fixtures' network, 16x32 latent
    python -m bench.freenoise_bench --variant 512 --full --mode bf16   # a GPU: the released 512 shape

For a video of N frames and S DDIM steps, the crossfaded Long Video node (clips of 16, overlap 4) runs
``S x clips`` UNet calls of 16 frames; FreeNoise runs ``S`` calls of N frames with its windows (16, stride 4).
Each call carries cond and uncond together (batch 2), as the host batches them; the original's count, one call
per branch, is twice that. The UNet time of one call is measured (median of ``--repeats``; on CPU the process's
CPU time, steadier than wall time on a shared machine: run it with one thread), the run's UNet time
is calls x that; "per frame" divides by N. A plain N-frame call (no windows: what the model does when simply
given more frames) shows FreeNoise's own overhead. VAE and conditioning are left out (the crossfaded mode also
encodes one picture and decodes 4 overlap frames more per clip). Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from bench.measure import CallTimer, PeakMemory, environment, median
from bench.models import build_unet, compute_dtype, workload
from bench.report import RESULTS_DIR, gib, table, write_json
from dynamicrafter import freenoise
from dynamicrafter.chain import ContinuationPlan
from dynamicrafter.config import IMAGE_TOKENS_PER_FRAME, TEXT_TOKENS

log = logging.getLogger("freenoise_bench")
CLIP, OVERLAP, BATCH = 16, 4, 2
COLUMNS = [
    "frames",
    "mode",
    "unet_calls",
    "frames_per_call",
    "s_per_call",
    "unet_s_run",
    "unet_s_per_frame",
    "vs_crossfade",
    "peak_delta_gib",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", default="512")
    parser.add_argument("--full", action="store_true", help="the released network and latent (else the smoke one)")
    parser.add_argument("--latent", type=int, nargs=2, default=None, metavar=("H", "W"), help="CPU default 16 32")
    parser.add_argument("--mode", default=None, help="weight mode (CPU fp32, GPU bf16)")
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the run the figures are for")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cuda = torch.device(args.device).type == "cuda"
    args.mode = args.mode or ("bf16" if cuda else "fp32")
    if args.latent is None and not args.full:
        args.latent = [16, 32]
    return args


def inputs(unet_config, frames: int, latent, dtype, device) -> tuple:
    """x [2, 8, T, h, w], t, text [2, 77, C], the Resampler's 16 x 16 image tokens [2, 256, C], fs."""
    g = torch.Generator().manual_seed(frames)
    h, w = latent
    x = torch.randn(BATCH, unet_config.in_channels, frames, h, w, generator=g).to(device, dtype)
    text = torch.randn(BATCH, TEXT_TOKENS, unet_config.context_dim, generator=g).to(device, dtype)
    tokens = torch.randn(BATCH, IMAGE_TOKENS_PER_FRAME * CLIP, unet_config.context_dim, generator=g).to(device, dtype)
    t = torch.full((BATCH,), 999, dtype=torch.int64, device=device)
    return x, t, text, tokens


def time_call(model, args_, options, device, repeats: int) -> tuple[float, int | None]:
    timer = CallTimer(device)
    call = lambda: model(*args_[:3], image_context=args_[3], transformer_options=dict(options))  # noqa: E731
    with torch.no_grad():
        call()  # warm-up
        with PeakMemory(device) as memory:
            for _ in range(repeats):
                timer(call)
    seconds = timer.cpu_seconds() if device.type == "cpu" else timer.seconds()
    return median(seconds), memory.delta_bytes


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), compute_dtype(args.mode)
    work = workload(args.variant, tuple(args.latent) if args.latent else None, None, smoke=not args.full)
    model = build_unet(work.unet, args.mode, device)
    on = {freenoise.OPTION: freenoise.FreeNoise()}
    clip_s, clip_mem = time_call(model, inputs(work.unet, CLIP, work.latent, dtype, device), {}, device, args.repeats)
    rows = []
    for frames in args.frames:
        clips = ContinuationPlan(frames, CLIP, OVERLAP).clips
        crossfade_run = args.steps * clips * clip_s
        batch = inputs(work.unet, frames, work.latent, dtype, device)
        measured = {
            "FreeNoise one pass": time_call(model, batch, on, device, args.repeats),
            "plain (no windows)": time_call(model, batch, {}, device, args.repeats),
        }
        rows.append(_row(frames, "crossfaded clips", args.steps * clips, CLIP, clip_s, clip_mem, crossfade_run))
        for mode, (seconds, memory) in measured.items():
            rows.append(_row(frames, mode, args.steps, frames, seconds, memory, crossfade_run))
    network = f"{'released' if args.full else 'smoke (parity fixtures)'} {args.variant} network"
    label = f"{network}, latent {work.latent[0]}x{work.latent[1]}, {args.mode}, {args.steps} steps, {device}"
    print(f"\nLong video: FreeNoise vs crossfaded clips ({label}; UNet only)\n")
    print(table(rows, COLUMNS))
    out = args.out or RESULTS_DIR / f"freenoise_{device.type}.json"
    write_json(out, {"environment": environment(device), "workload": label, "rows": rows})
    log.info("wrote %s", out)


def _row(frames, mode, calls, per_call, seconds, memory, crossfade_run) -> dict:
    run = calls * seconds
    return {
        "frames": frames,
        "mode": mode,
        "unet_calls": calls,
        "frames_per_call": per_call,
        "s_per_call": seconds,
        "unet_s_run": run,
        "unet_s_per_frame": run / frames,
        "vs_crossfade": run / crossfade_run,
        "peak_delta_gib": gib(memory),
    }


if __name__ == "__main__":
    main()
