"""FLOPs of one forward pass, counted with ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors.

The counter charges 2 FLOPs per multiply-accumulate of mm/addmm/bmm/convolution and SDPA; norms,
softmax and elementwise ops are free, as in the spec's section 12.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dynamicrafter.unet import DynamiCrafterUNet

from .models import Workload, unet_inputs

SPEC_UNET_TFLOP = {"256": 4.904, "512": 12.603, "1024": 52.336, "512_interp": 12.603}
"""Spec section 12: one UNet call, batch 1, 16 frames, counted on the ORIGINAL model."""
SPEC_UNET_PARTS_TFLOP = {
    "256": {"resblock_2d": 1.379, "temporal_conv": 0.674, "spatial_transformers": 1.239,
            "temporal_transformers": 1.132, "init_attn": 0.184, "down_upsample": 0.294},
    "512": {"resblock_2d": 3.446, "temporal_conv": 1.686, "spatial_transformers": 3.443,
            "temporal_transformers": 2.829, "init_attn": 0.459, "down_upsample": 0.736},
    "1024": {"resblock_2d": 12.405, "temporal_conv": 6.070, "spatial_transformers": 19.364,
             "temporal_transformers": 10.185, "init_attn": 1.653, "down_upsample": 2.650},
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
