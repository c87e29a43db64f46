"""UNet call and default-run benchmark per variant and weight mode, on CPU or CUDA.

    python -m bench.unet_bench --threads 1                       # CPU default: 256, fp32 and bf16, 1 step
    python -m bench.unet_bench --variants 512 1024 --modes bf16 fp16 fp8 --steps 50   # a GPU

Full-size shapes and random weights in the real layout. ``--steps`` below 50 extrapolates the
default run (100 UNet calls) from the measured per-call time; such rows say EXTRAPOLATED.
``--latent``/``--frames`` shrink the shape; such rows say REDUCED and are not full-size figures.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from bench.flops import SPEC_UNET_TFLOP, unet_flops
from bench.measure import environment
from bench.models import WEIGHT_MODES, build_unet, workload
from bench.report import RESULTS_DIR, table, write_json
from bench.runs import TABLE_COLUMNS, benchmark_run
from dynamicrafter.config import VARIANTS

log = logging.getLogger("unet_bench")


GPU_DEFAULTS = {"variants": ["512", "1024"], "modes": ["bf16", "fp16", "fp8"], "steps": 50, "warmup": 2}
CPU_DEFAULTS = {"variants": ["256"], "modes": ["fp32", "bf16"], "steps": 1, "warmup": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="GPU: 512 1024; CPU: 256")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=WEIGHT_MODES,
        help="weight modes; GPU: bf16 fp16 fp8, CPU: fp32 bf16 (fp8 = float8_e4m3fn storage, "
        "bf16 compute; fp16 on a CPU without native fp16 compute is extremely slow)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="DDIM steps actually run, 2 UNet calls each (GPU 50, CPU 1); below 50 the default run is extrapolated",
    )
    parser.add_argument("--warmup", type=int, help="untimed UNet calls first (GPU 2, CPU 1)")
    parser.add_argument("--latent", type=int, nargs=2, metavar=("H", "W"), help="REDUCED latent size")
    parser.add_argument("--frames", type=int, help="REDUCED frame count")
    parser.add_argument("--smoke", action="store_true", help="the parity fixtures' tiny network (seconds)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/unet_<device>.json)")
    args = parser.parse_args(argv)
    defaults = GPU_DEFAULTS if torch.device(args.device).type == "cuda" else CPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows, flop_rows = [], []
    for variant in args.variants:
        work = workload(variant, args.latent, args.frames, args.smoke)
        flops = unet_flops(work)
        flop_rows.append(
            {
                "variant": work.label,
                "tflop_per_call": flops.total / 1e12,
                "spec_tflop_per_call": SPEC_UNET_TFLOP[variant] if work.full_size else None,
                "by_op_tflop": {op: n / 1e12 for op, n in flops.by_op.items()},
            }
        )
        for mode in args.modes:
            log.info("%s %s: building the UNet on %s", work.label, mode, device)
            unet = build_unet(work.unet, mode, device)
            result = benchmark_run(unet, work, mode, device, args.steps, args.warmup, flops.total)
            log.info("%s %s: %.3f s per call", work.label, mode, result.call_s)
            rows.append(result.row())
            del unet
    env = environment(device)
    print(f"\nUNet, batch 1 per call, CFG as 2 calls per step; {env['device']}, torch {env['torch']}")
    print(table(flop_rows, ("variant", "tflop_per_call", "spec_tflop_per_call")))
    print()
    print(table(rows, TABLE_COLUMNS))
    out = args.out or RESULTS_DIR / f"unet_{device.type}{'_smoke' if args.smoke else ''}.json"
    write_json(
        out, {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "flops": flop_rows, "runs": rows}
    )


if __name__ == "__main__":
    main()
