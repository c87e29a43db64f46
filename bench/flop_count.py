"""FLOPs of OUR UNet per call and per default run, counted on the meta device, against the spec.

    python bench/flop_count.py [--variants 256 512 1024 512_interp]

Seconds on a CPU and no memory: nothing is computed. The spec's figures (section 12) were counted
on the original model; ours differ only where our network does less work (see docs/performance.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flops import CALLS_PER_DEFAULT_RUN, SPEC_UNET_PARTS_TFLOP, SPEC_UNET_TFLOP, unet_flops  # noqa: E402
from bench.models import workload  # noqa: E402
from bench.report import RESULTS_DIR, table, write_json  # noqa: E402
from dynamicrafter.config import VARIANTS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["256", "512", "1024"])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "flops.json")
    args = parser.parse_args(argv)

    totals, parts = [], []
    for variant in args.variants:
        count = unet_flops(workload(variant))
        ours, spec = count.total / 1e12, SPEC_UNET_TFLOP[variant]
        totals.append({"variant": variant, "ours_tflop": ours, "spec_tflop": spec, "ours/spec": ours / spec,
                       "ours_run_tflop": ours * CALLS_PER_DEFAULT_RUN, "spec_run_tflop": spec * CALLS_PER_DEFAULT_RUN,
                       **{f"{op}_tflop": n / 1e12 for op, n in sorted(count.by_op.items())}})
        for part, n in count.by_part.items():
            parts.append({"variant": variant, "part": part, "ours_tflop": n / 1e12,
                          "spec_tflop": SPEC_UNET_PARTS_TFLOP[variant][part]})
    print("\nUNet forward, batch 1, 16 frames; run = 100 calls (50 DDIM steps x CFG)")
    print(table(totals, list(totals[0])))
    print()
    print(table(parts, ("variant", "part", "ours_tflop", "spec_tflop")))
    write_json(args.out, {"unet": totals, "unet_parts": parts})


if __name__ == "__main__":
    main()
