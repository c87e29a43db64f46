"""UNet call and default-run benchmark per variant and weight mode, on CPU or CUDA.

    python bench/unet_bench.py                                   # CPU default: 256, fp32/bf16/fp8, 1 step
    python bench/unet_bench.py --variants 512 1024 --modes bf16 fp16 fp8 --steps 50   # a GPU

Full-size shapes and random weights in the real layout. ``--steps`` below 50 extrapolates the
default run (100 UNet calls) from the measured per-call time; such rows say EXTRAPOLATED.
``--latent``/``--frames`` shrink the shape; such rows say REDUCED and are not full-size figures.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flops import SPEC_UNET_TFLOP, unet_flops  # noqa: E402
from bench.measure import environment  # noqa: E402
from bench.models import WEIGHT_MODES, build_unet, workload  # noqa: E402
from bench.report import RESULTS_DIR, table, write_json  # noqa: E402
from bench.runs import TABLE_COLUMNS, benchmark_run  # noqa: E402
from dynamicrafter.config import VARIANTS  # noqa: E402

log = logging.getLogger("unet_bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["512", "1024"] if cuda else ["256"])
    parser.add_argument("--modes", nargs="+", choices=WEIGHT_MODES,
                        default=["bf16", "fp16", "fp8"] if cuda else ["fp32", "bf16", "fp8"],
                        help="weight modes (fp8 = float8_e4m3fn storage, bf16 compute). fp16 on CPU is "
                             "extremely slow (no native fp16 compute)")
    parser.add_argument("--steps", type=int, default=50 if cuda else 1,
                        help="DDIM steps actually run (2 UNet calls each); below 50 the default run is extrapolated")
    parser.add_argument("--warmup", type=int, default=2 if cuda else 1, help="untimed UNet calls first")
    parser.add_argument("--latent", type=int, nargs=2, metavar=("H", "W"), help="REDUCED latent size")
    parser.add_argument("--frames", type=int, help="REDUCED frame count")
    parser.add_argument("--smoke", action="store_true", help="the parity fixtures' tiny network (seconds)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/unet_<device>.json)")
    return parser.parse_args(argv)


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
        flop_rows.append({"variant": work.label, "tflop_per_call": flops.total / 1e12,
                          "spec_tflop_per_call": SPEC_UNET_TFLOP[variant] if work.full_size else None,
                          "by_op_tflop": {op: n / 1e12 for op, n in flops.by_op.items()}})
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
    write_json(out, {"environment": env, "args": {k: str(v) for k, v in vars(args).items()},
                     "flops": flop_rows, "runs": rows})


if __name__ == "__main__":
    main()
