"""FLOPs of OUR UNet per call and per default run, counted on the meta device, against the spec.

    python -m bench.flops [--variants 256 512 1024 512_interp]

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors: seconds on a CPU and no memory,
nothing is computed. The counter charges 2 FLOPs per multiply-accumulate of mm/addmm/bmm/convolution and
SDPA; norms, softmax and elementwise ops are free, as in the spec's section 12. The spec's figures were
counted on the original model; ours differ only where our network does less work (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dynamicrafter.config import VARIANTS
from dynamicrafter.unet import DynamiCrafterUNet

from .models import Workload, unet_inputs, workload
from .report import RESULTS_DIR, table, write_json

SPEC_UNET_TFLOP = {"256": 4.904, "512": 12.603, "1024": 52.336, "512_interp": 12.603}
"""Spec section 12: one UNet call, batch 1, 16 frames, counted on the ORIGINAL model."""
SPEC_UNET_PARTS_TFLOP = {
    "256": {
        "resblock_2d": 1.379,
        "temporal_conv": 0.674,
        "spatial_transformers": 1.239,
        "temporal_transformers": 1.132,
        "init_attn": 0.184,
        "down_upsample": 0.294,
    },
    "512": {
        "resblock_2d": 3.446,
        "temporal_conv": 1.686,
        "spatial_transformers": 3.443,
        "temporal_transformers": 2.829,
        "init_attn": 0.459,
        "down_upsample": 0.736,
    },
    "1024": {
        "resblock_2d": 12.405,
        "temporal_conv": 6.070,
        "spatial_transformers": 19.364,
        "temporal_transformers": 10.185,
        "init_attn": 1.653,
        "down_upsample": 2.650,
    },
}
SPEC_UNET_PARTS_TFLOP["512_interp"] = SPEC_UNET_PARTS_TFLOP["512"]
SPEC_VAE_DECODE_TFLOP = {"256": 9.955, "512": 25.016, "1024": 92.069, "512_interp": 25.016}
"""Spec section 12: VAE decode of 16 frames."""
CALLS_PER_DEFAULT_RUN = 100
"""50 DDIM steps, each a conditional and an unconditional call (the original's CFG)."""


@dataclass(frozen=True)
class FlopCount:
    total: float
    by_op: dict[str, float]
    by_part: dict[str, float]
    """The spec's rows: resblock_2d, temporal_conv, spatial_transformers, temporal_transformers
    (in blocks), init_attn, down_upsample."""


def _module_totals(counter: FlopCounterMode, model: nn.Module) -> dict[str, float]:
    """Sum the counter's per-module totals by layer class (init_attn's transformer apart)."""
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    sums: dict[str, float] = defaultdict(float)
    for name, module in model.named_modules():
        counts = per_module.get(f"{root}.{name}")
        if counts:
            key = "init_attn" if name == "init_attn.0" else type(module).__name__
            sums[key] += float(sum(counts.values()))
    return {
        "resblock_2d": sums["ResBlock"] - sums["TemporalConvBlock"],
        "temporal_conv": sums["TemporalConvBlock"],
        "spatial_transformers": sums["SpatialTransformer"],
        "temporal_transformers": sums["TemporalTransformer"],
        "init_attn": sums["init_attn"],
        "down_upsample": sums["Downsample"] + sums["Upsample"],
    }


def count_flops(model: nn.Module, fn: Callable[[], object]) -> FlopCount:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    by_op = {str(op).removeprefix("aten."): float(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return FlopCount(float(counter.get_total_flops()), by_op, _module_totals(counter, model))


def unet_flops(work: Workload, batch: int = 1) -> FlopCount:
    """FLOPs of our UNet for ``work`` at ``batch`` videos, from a meta-device model (no memory, ~2 s)."""
    with torch.device("meta"):
        model = DynamiCrafterUNet(work.unet).eval()
    inputs = unet_inputs(work, batch, torch.float32, "meta")
    return count_flops(model, lambda: model(**inputs))


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
        totals.append(
            {
                "variant": variant,
                "ours_tflop": ours,
                "spec_tflop": spec,
                "ours/spec": ours / spec,
                "ours_run_tflop": ours * CALLS_PER_DEFAULT_RUN,
                "spec_run_tflop": spec * CALLS_PER_DEFAULT_RUN,
                **{f"{op}_tflop": n / 1e12 for op, n in sorted(count.by_op.items())},
            }
        )
        for part, n in count.by_part.items():
            parts.append(
                {
                    "variant": variant,
                    "part": part,
                    "ours_tflop": n / 1e12,
                    "spec_tflop": SPEC_UNET_PARTS_TFLOP[variant][part],
                }
            )
    print("\nUNet forward, batch 1, 16 frames; run = 100 calls (50 DDIM steps x CFG)")
    print(table(totals, list(totals[0])))
    print()
    print(table(parts, ("variant", "part", "ours_tflop", "spec_tflop")))
    write_json(args.out, {"unet": totals, "unet_parts": parts})


if __name__ == "__main__":
    main()
