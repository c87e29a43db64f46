"""Side by side on CPU: our UNet against the ORIGINAL UNetModel, same weights and inputs, one process.

    python -m bench.compare_original --original PATH/TO/DynamiCrafter --preset medium

Needs a Python with torch, einops, safetensors, numpy and opencv (the original's ``utils/utils.py``
imports cv2). Both models run in float32, eval mode, under ``torch.inference_mode``; calls are
interleaved (ours, original, ours, ...) so both see the same machine load; the figures are the
ratios of median wall time and of median process CPU time (the steadier one when other jobs share
the cores). Then one call of each is profiled (top ops by self CPU time).

Presets: ``small_512`` is the parity fixture (weights and inputs from parity/small_512; both outputs
are also checked against the recorded original output); ``medium`` is model_channels 64 at the
512 latent 40x64, 16 frames, batch 1; ``full_256`` is the released 256 network at 32x32 (slow).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from bench.breakdown import LayerClassTimer
from bench.measure import CallTimer, environment, median
from bench.models import Workload, build_unet, unet_inputs, workload
from bench.original import ORIGINAL_COMMIT, import_original_unet, original_kwargs, original_path
from bench.report import RESULTS_DIR, table, write_json
from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.config import UNetConfig, get_variant
from dynamicrafter.unet import DynamiCrafterUNet

log = logging.getLogger("compare_original")

UNET_PREFIX = PART_PREFIXES["unet"]
Inputs = dict[str, torch.Tensor]


@dataclass
class Pair:
    """Both networks with identical weights, the inputs, and optionally the recorded original output."""

    description: str
    ours: nn.Module
    original: nn.Module
    inputs: Inputs
    golden: torch.Tensor | None = None


def parity_folder(cli_value: str | None) -> Path:
    """The golden-output folder: --parity, else $DYNAMICRAFTER_PARITY_DIR, else the project's tests/data/parity."""
    folder = Path(
        cli_value
        or os.environ.get("DYNAMICRAFTER_PARITY_DIR")
        or Path(__file__).resolve().parents[1] / "tests" / "data" / "parity"
    )
    if not (folder / "small_512").is_dir():
        raise SystemExit(f"no parity fixture small_512 in {folder}: give --parity or DYNAMICRAFTER_PARITY_DIR")
    return folder


def parity_pair(original_cls: type[nn.Module], parity: Path, name: str) -> Pair:
    folder = parity / name
    config = json.loads((folder / "config.json").read_text())
    kwargs = config["UNetModel"]
    ours_config = UNetConfig(
        model_channels=kwargs["model_channels"],
        channel_mult=tuple(kwargs["channel_mult"]),
        num_head_channels=kwargs["num_head_channels"],
        context_dim=kwargs["context_dim"],
        image_cross_attention_scale_learnable=kwargs["image_cross_attention_scale_learnable"],
        default_fs=kwargs["default_fs"],
    )
    weights = {
        k.removeprefix(UNET_PREFIX): v
        for k, v in load_file(folder / "weights.safetensors").items()
        if k.startswith(UNET_PREFIX)
    }
    ours = DynamiCrafterUNet(ours_config)
    ours.load_state_dict(weights, strict=True)
    original = original_cls(**kwargs)
    original.load_state_dict(weights, strict=True)
    io = load_file(folder / "unet_io.safetensors")
    inputs = {k: io[k] for k in ("x", "timesteps", "context", "fs")}
    h, w = inputs["x"].shape[-2:]
    return Pair(
        f"parity {name}: model_channels {kwargs['model_channels']}, batch {inputs['x'].shape[0]}, "
        f"16 frames, latent {h}x{w}",
        ours,
        original,
        inputs,
        io["unet_out"],
    )


def random_pair(original_cls: type[nn.Module], work: Workload) -> Pair:
    ours = build_unet(work.unet, "fp32", "cpu")
    u = work.unet
    with torch.device("meta"):
        original = original_cls(
            **original_kwargs(
                {
                    "model_channels": u.model_channels,
                    "channel_mult": list(u.channel_mult),
                    "num_head_channels": u.num_head_channels,
                    "context_dim": u.context_dim,
                    "default_fs": u.default_fs,
                    "image_cross_attention_scale_learnable": u.image_cross_attention_scale_learnable,
                }
            )
        )
    # The original takes our tensors themselves: one copy of the weights in memory (5.4 GB at full size).
    original.load_state_dict(ours.state_dict(), strict=True, assign=True)
    h, w = work.latent
    return Pair(
        f"{work.label}: model_channels {u.model_channels}, mult {list(u.channel_mult)}, head "
        f"{u.num_head_channels}, context {u.context_dim}, batch 1, {work.frames} frames, latent {h}x{w}",
        ours,
        original,
        unet_inputs(work, 1, torch.float32, "cpu"),
    )


def make_pair(preset: str, original_cls: type[nn.Module], parity: str | None) -> Pair:
    if preset == "small_512":
        pair = parity_pair(original_cls, parity_folder(parity), "small_512")
    elif preset == "medium":
        variant = get_variant("512")
        medium = UNetConfig(model_channels=64, default_fs=variant.unet.default_fs)
        pair = random_pair(original_cls, Workload(variant, medium, variant.latent_size, variant.frames, False))
    else:
        pair = random_pair(original_cls, workload("256"))
    pair.ours.eval()
    pair.original.eval()
    return pair


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def time_interleaved(
    calls: dict[str, Callable[[], object]], models: dict[str, nn.Module], warmup: int, repeats: int
) -> tuple[dict[str, CallTimer], dict[str, dict[str, float]]]:
    """Median-ready call times of each model, interleaved, and the median seconds per layer class."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    timers = {name: CallTimer(torch.device("cpu")) for name in calls}
    layers = {name: LayerClassTimer(models[name]) for name in calls}
    try:
        for _ in range(repeats):
            for name, fn in calls.items():
                timers[name](fn)
                layers[name].end_call()
    finally:
        for layer_timer in layers.values():
            layer_timer.remove()
    return timers, {name: layer_timer.medians() for name, layer_timer in layers.items()}


def profile(fn: Callable[[], object], rows: int) -> tuple[str, list[dict[str, Any]]]:
    """Top ops by self CPU time of one call: the printable table and the rows for JSON."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    records = [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in top
    ]
    return averages.table(sort_by="self_cpu_time_total", row_limit=rows), records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", help="extracted Doubiiu/DynamiCrafter (default: $DYNAMICRAFTER_ORIGINAL)")
    parser.add_argument(
        "--stubs",
        help="folder with an import-time torchvision stand-in (default: "
        "$DYNAMICRAFTER_ORIGINAL_STUBS; the UNet import does not need it)",
    )
    parser.add_argument("--parity", help="folder of golden outputs holding small_512/ (default: tests/data/parity)")
    parser.add_argument("--preset", choices=("small_512", "medium", "full_256"), default="medium")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads (default 1: robust on a shared machine, as the fixtures)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed calls of each model before timing, at least 1 (the first gives the outputs)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/compare_<preset>_t<threads>.json)")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.repeats < 1:
        parser.error("--warmup and --repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    repo = original_path(args.original)
    original_cls = import_original_unet(repo, args.stubs)
    torch.manual_seed(0)
    pair = make_pair(args.preset, original_cls, args.parity)
    log.info("%s", pair.description)

    with torch.inference_mode():
        calls = {"ours": lambda: pair.ours(**pair.inputs), "original": lambda: pair.original(**pair.inputs)}
        out_ours, out_original = calls["ours"](), calls["original"]()  # also the first warm-up call
        agreement = {
            "ours_vs_original": relative_error(out_ours, out_original),
            "max_abs_diff": float((out_ours - out_original).abs().max()),
        }
        if pair.golden is not None:
            agreement["ours_vs_recorded"] = relative_error(out_ours, pair.golden)
            agreement["original_vs_recorded"] = relative_error(out_original, pair.golden)
        del out_ours, out_original
        models = {"ours": pair.ours, "original": pair.original}
        timers, by_class = time_interleaved(calls, models, args.warmup - 1, args.repeats)
        profiles = {name: profile(fn, args.profile_rows) for name, fn in calls.items()}

    rows = [
        {
            "model": name,
            "median_s": median(t.seconds()),
            "min_s": min(t.seconds()),
            "max_s": max(t.seconds()),
            "median_cpu_s": median(t.cpu_seconds()),
            "repeats": len(t.seconds()),
        }
        for name, t in timers.items()
    ]
    ratio = rows[0]["median_s"] / rows[1]["median_s"]
    cpu_ratio = rows[0]["median_cpu_s"] / rows[1]["median_cpu_s"]
    env = environment(torch.device("cpu"))
    print(
        f"\n{pair.description}\n{env['device']}, torch {env['torch']}, float32, "
        f"load average at start {env['load_1m_at_start']:.2f}"
    )
    print("agreement (relative L2): " + ", ".join(f"{k} {v:.2e}" for k, v in agreement.items()))
    print(table(rows, ("model", "median_s", "min_s", "max_s", "median_cpu_s", "repeats")))
    print(f"ratio ours/original (median wall time): {ratio:.3f}; (median process CPU time): {cpu_ratio:.3f}\n")
    layers = [
        {
            "layer class (inclusive)": cls,
            "ours_s": by_class["ours"][cls],
            "original_s": by_class["original"][cls],
            "ratio": by_class["ours"][cls] / by_class["original"][cls] if by_class["original"][cls] else None,
        }
        for cls in by_class["ours"]
    ]
    print("median seconds per call in each layer class (inclusive: TemporalConvBlock also counts in ResBlock):")
    print(table(layers, ("layer class (inclusive)", "ours_s", "original_s", "ratio")) + "\n")
    for name, (text, _) in profiles.items():
        print(f"profile of one call, {name}, top {args.profile_rows} ops by self CPU time:\n{text}")
    out = args.out or RESULTS_DIR / f"compare_{args.preset}_t{args.threads}.json"
    write_json(
        out,
        {
            "environment": env,
            "original": {"path": str(repo), "commit": ORIGINAL_COMMIT},
            "preset": args.preset,
            "description": pair.description,
            "agreement": agreement,
            "timing": rows,
            "ratio_ours_over_original": ratio,
            "cpu_time_ratio_ours_over_original": cpu_ratio,
            "seconds_by_layer_class": by_class,
            "load_1m_at_end": os.getloadavg()[0],
            "profiles": {name: records for name, (_, records) in profiles.items()},
        },
    )


if __name__ == "__main__":
    main()
