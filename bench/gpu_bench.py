"""Every GPU figure in one run: default runs of the 512 and 1024 UNets per weight mode, VAE, compile.

    python -m bench.gpu_bench --out $OUT/gpu.json        # on an H100/H200, a few minutes
    python -m bench.gpu_bench --smoke                    # the tiny parity network, seconds, any device

Needs only torch, einops and safetensors (the VAE section also needs an importable ComfyUI and is
skipped, saying so, without one). Random weights in the real layout. In order, each section only
when the time budget still allows it (estimated from what was already measured):

1. FLOPs per UNet call (meta device) for 512 and 1024.
2. bf16: the full default run (16 frames, 50 DDIM steps, CFG as 2 batch-1 calls = 100 UNet calls)
   at 512 and 1024: seconds, median per-call seconds, TFLOP/s, fraction of the nominal peak, peak
   VRAM (torch.cuda.max_memory_allocated, weights included).
3. The same with fp16 weights, then with fp8 storage (float8_e4m3fn, upcast to bf16 per layer).
4. VAE decode of 16 frames through ComfyUI (bf16) at 512 and 1024, if ComfyUI imports.
5. torch.compile (bf16, 512): compile time, then 10 steps (20 calls), run EXTRAPOLATED to 100 calls.

The JSON is rewritten after every section, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.flops import SPEC_UNET_TFLOP, unet_flops
from bench.measure import environment
from bench.models import build_unet, workload
from bench.report import RESULTS_DIR, table, write_json
from bench.runs import RunResult, benchmark_run

log = logging.getLogger("gpu_bench")

COMPILE_STEPS = 10
GPU_COLUMNS = (
    "variant",
    "mode",
    "warmup_s",
    "call_s",
    "tflops",
    "fraction_of_peak",
    "default_run_s",
    "run_basis",
    "weights_gib",
    "peak_gib",
)


class Session:
    """The time budget, the results so far, and the JSON they are written to."""

    def __init__(self, out: Path, budget_s: float, device: torch.device, args: argparse.Namespace):
        self.out, self.budget_s, self.device, self.start = out, budget_s, device, time.perf_counter()
        self.results: dict[str, Any] = {
            "environment": environment(device),
            "args": {k: str(v) for k, v in vars(args).items()},
            "flops": [],
            "runs": [],
            "vae": [],
            "compile": [],
            "skipped": [],
            "errors": [],
        }

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def allows(self, what: str, estimate_s: float) -> bool:
        if estimate_s <= self.left():
            return True
        self.results["skipped"].append(f"{what}: needs ~{estimate_s:.0f} s, {self.left():.0f} s of budget left")
        log.warning("skipping %s", self.results["skipped"][-1])
        return False

    def attempt(self, what: str, fn: Callable[[], None]) -> None:
        """Run one section; an exception is recorded and the script goes on with the next."""
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - one failed section must not lose the others
            log.error("%s failed: %s", what, error)
            self.results["errors"].append({"section": what, "error": repr(error), "traceback": traceback.format_exc()})
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.save()

    def save(self) -> None:
        self.results["elapsed_s"] = time.perf_counter() - self.start
        write_json(self.out, self.results)


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_mode(
    session: Session, mode: str, variants: list[str], args: argparse.Namespace, estimates: dict[str, float]
) -> None:
    """Build one UNet per weight mode (512 and 1024 share the network) and run each variant."""
    unet = None
    for variant in variants:
        if not session.allows(f"{mode} {variant}", estimates.get(variant, 0.0) * 1.3 + 15):
            continue
        work = workload(variant, smoke=args.smoke)
        if unet is None:
            unet = build_unet(work.unet, mode, session.device)
        flops = unet_flops(work).total
        result = benchmark_run(unet, work, mode, session.device, args.steps, args.warmup, flops)
        session.results["runs"].append(result.row())
        estimates.setdefault(variant, result.warmup_s + result.run_s)
        log.info("%s %s: %.4f s per call, run %.2f s", mode, work.label, result.call_s, result.run_s)
        session.save()
    del unet
    release(session.device)


def run_vae(session: Session, args: argparse.Namespace) -> None:
    from bench import vae_bench

    try:
        sd_module = vae_bench.import_comfy(args.comfyui, cpu=session.device.type == "cpu")
    except (ImportError, SystemExit) as error:
        session.results["skipped"].append(f"VAE decode: ComfyUI not importable ({error}); give --comfyui")
        log.warning("%s", session.results["skipped"][-1])
        return
    config = vae_bench.SMOKE_VAE_CONFIG if args.smoke else vae_bench.SD_VAE_CONFIG
    rows = vae_bench.benchmark_vae(sd_module, config, args.variants, ["bf16"], vae_bench.VIDEO_FRAMES, args.smoke)
    session.results["vae"].extend(rows)


def run_compile(session: Session, args: argparse.Namespace) -> None:
    variant = args.variants[0]
    work = workload(variant, smoke=args.smoke)
    unet = torch.compile(build_unet(work.unet, "bf16", session.device))
    flops = unet_flops(work).total
    result: RunResult = benchmark_run(
        unet, work, "bf16", session.device, min(COMPILE_STEPS, args.steps), args.warmup, flops
    )
    row = result.row() | {"mode": "bf16+compile"}
    session.results["compile"].append(row)
    log.info("compile %s: warm-up (compilation) %.1f s, %.4f s per call", work.label, result.warmup_s, result.call_s)
    del unet
    release(session.device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "gpu.json")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny network, 1 step, 1 warm-up call (on CPU: 1 thread), on CPU unless CUDA exists",
    )
    parser.add_argument("--variants", nargs="+", default=["512", "1024"])
    parser.add_argument("--modes", nargs="+", default=["bf16", "fp16", "fp8"])
    parser.add_argument("--steps", type=int, help="DDIM steps (default 50; smoke 1)")
    parser.add_argument("--warmup", type=int, help="untimed UNet calls before each run (default 2; smoke 1)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="stop starting new sections once this much wall time is spent (default 360)",
    )
    parser.add_argument("--comfyui", help="ComfyUI folder for the VAE section (default $COMFYUI_DIR, .cache/comfyui)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, help="torch.compile section (default: on, off with --smoke)"
    )
    args = parser.parse_args(argv)
    args.steps = args.steps or (1 if args.smoke else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    args.compile = (not args.smoke) if args.compile is None else args.compile
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("no CUDA device: this script is for a GPU (use --smoke to test it on CPU)")
    if device.type == "cpu":
        torch.set_num_threads(1)  # spin-waiting OpenMP threads crawl when the few cores are shared
    session = Session(args.out, args.budget_s, device, args)
    log.info("%s, torch %s", session.results["environment"]["device"], torch.__version__)

    def count() -> None:
        for variant in args.variants:
            work = workload(variant, smoke=args.smoke)
            session.results["flops"].append(
                {
                    "variant": work.label,
                    "tflop_per_call": unet_flops(work).total / 1e12,
                    "spec_tflop_per_call": None if args.smoke else SPEC_UNET_TFLOP[variant],
                }
            )

    session.attempt("flops", count)
    estimates: dict[str, float] = {}
    for mode in args.modes:
        session.attempt(f"{mode} runs", lambda mode=mode: run_mode(session, mode, args.variants, args, estimates))
    if session.allows("VAE decode", 30):
        session.attempt("VAE decode", lambda: run_vae(session, args))
    if args.compile and session.allows("torch.compile", 180):
        session.attempt("torch.compile", lambda: run_compile(session, args))

    results = session.results
    print(
        f"\n{results['environment']['device']}, torch {torch.__version__}; UNet batch 1 per call, "
        f"default run = 100 calls (50 DDIM steps x CFG)"
    )
    print(table(results["flops"], ("variant", "tflop_per_call", "spec_tflop_per_call")))
    print()
    print(table(results["runs"] + results["compile"], GPU_COLUMNS))
    if results["vae"]:
        print()
        print(
            table(results["vae"], ("variant", "mode", "video_16f_s", "basis", "tflops", "fraction_of_peak", "peak_gib"))
        )
    for line in results["skipped"]:
        print(f"skipped: {line}")
    for error in results["errors"]:
        print(f"error in {error['section']}: {error['error']}")
    print(f"total {results['elapsed_s']:.0f} s; JSON: {args.out}")


if __name__ == "__main__":
    main()
