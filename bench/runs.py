"""Time UNet calls inside the reference DDIM loop: the default run and its per-call figures.

A default run is the original sampler's: 50 DDIM steps, classifier-free guidance with separate
conditional and unconditional batch-1 calls (100 UNet calls), guidance rescale and dynamic rescale
as the variant's defaults say. The latent stays float32 between steps; the UNet runs in the weight
mode's compute dtype, as a ComfyUI model wrapper does. With fewer steps the run time is extrapolated
to 100 calls from the measured per-call time, and the row says so.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dynamicrafter.ddim import DDIMSettings, ddim_sample
from dynamicrafter.schedule import make_schedule

from .flops import CALLS_PER_DEFAULT_RUN
from .measure import CallTimer, PeakMemory, median, peak_tflops, synchronize, throughput, timed
from .models import Workload, compute_dtype, unet_inputs, weight_bytes
from .report import gib


@dataclass
class RunResult:
    variant: str
    full_size: bool
    mode: str
    frames: int
    latent: str
    steps: int
    warmup_calls: int
    warmup_s: float
    """Untimed first calls (kernel selection; with torch.compile, the compilation)."""
    unet_calls: int
    call_s: float
    call_s_min: float
    call_cpu_s: float | None
    """CPU device: median process CPU time per call (all threads), steadier than wall time when
    other jobs share the cores."""
    run_s: float
    run_basis: str
    default_run_s: float
    tflop_per_call: float
    tflops: float
    tflops_per_cpu_s: float | None
    """CPU device: FLOPs per second of process CPU time (per busy core when single-threaded)."""
    fraction_of_peak: float | None
    weights_gib: float
    peak_gib: float | None
    peak_delta_gib: float | None
    load_1m: float
    """The machine's 1-minute load average after the run: above the thread count, other processes competed."""

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TimedUNet:
    """``model(x, t, context)`` for the sampler; records the time of every UNet call."""

    def __init__(self, unet: nn.Module, c_concat: torch.Tensor, fs: torch.Tensor, dtype: torch.dtype):
        self.unet, self.c_concat, self.fs, self.dtype = unet, c_concat, fs, dtype
        self.timer = CallTimer(c_concat.device)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: object) -> torch.Tensor:
        inputs = torch.cat([x, self.c_concat], dim=1).to(self.dtype)
        return self.timer(lambda: self.unet(inputs, t, context, self.fs)).float()


def benchmark_run(
    unet: nn.Module, work: Workload, mode: str, device: torch.device, steps: int, warmup: int, flop_per_call: float
) -> RunResult:
    """Warm up, then sample ``steps`` DDIM steps with CFG, timing each UNet call and the whole loop."""
    dtype = compute_dtype(mode)
    cond = unet_inputs(work, 1, dtype, device, seed=1)
    uncond_context = unet_inputs(work, 1, dtype, device, seed=2)["context"]
    latent = cond["x"].float()
    x_T, c_concat = latent[:, :4], latent[:, 4:]
    model = TimedUNet(unet, c_concat, cond["fs"], dtype)

    with torch.inference_mode():
        warmup_s = timed(lambda: [model(x_T, cond["timesteps"], cond["context"]) for _ in range(warmup)], device)
        model.timer.clear()
        sampling = work.variant.sampling
        settings = DDIMSettings(
            steps=steps,
            eta=sampling.eta,
            cfg=sampling.cfg,
            spacing=sampling.spacing,
            guidance_rescale=sampling.guidance_rescale,
            dynamic_rescale=work.variant.schedule.dynamic_rescale,
        )
        schedule = make_schedule(work.variant.schedule)
        generator = torch.Generator(device).manual_seed(0)
        with PeakMemory(device) as memory:
            synchronize(device)
            start = time.perf_counter()
            for _ in ddim_sample(
                model,
                x_T,
                schedule,
                work.variant.schedule.prediction,
                settings,
                cond["context"],
                uncond_context,
                generator=generator,
            ):
                pass
            synchronize(device)
            run_s = time.perf_counter() - start

    seconds = model.timer.seconds()
    cpu_seconds = model.timer.cpu_seconds()
    calls = len(seconds)
    call_s = median(seconds)
    measured = calls == CALLS_PER_DEFAULT_RUN
    default_run_s = run_s if measured else run_s / calls * CALLS_PER_DEFAULT_RUN
    rate = throughput(flop_per_call, call_s, peak_tflops(device, mode))
    h, w = work.latent
    return RunResult(
        variant=work.label,
        full_size=work.full_size,
        mode=mode,
        frames=work.frames,
        latent=f"{h}x{w}",
        steps=steps,
        warmup_calls=warmup,
        warmup_s=warmup_s,
        unet_calls=calls,
        call_s=call_s,
        call_s_min=min(seconds),
        call_cpu_s=median(cpu_seconds) if cpu_seconds else None,
        run_s=run_s,
        run_basis="measured" if measured else f"EXTRAPOLATED x{CALLS_PER_DEFAULT_RUN}/{calls} calls",
        default_run_s=default_run_s,
        tflop_per_call=flop_per_call / 1e12,
        tflops=rate.tflops,
        tflops_per_cpu_s=flop_per_call / median(cpu_seconds) / 1e12 if cpu_seconds else None,
        fraction_of_peak=rate.fraction_of_peak,
        weights_gib=gib(weight_bytes(unet)),
        peak_gib=gib(memory.peak_bytes),
        peak_delta_gib=gib(memory.delta_bytes),
        load_1m=os.getloadavg()[0],
    )


TABLE_COLUMNS = (
    "variant",
    "mode",
    "call_s",
    "call_cpu_s",
    "tflops",
    "tflops_per_cpu_s",
    "fraction_of_peak",
    "default_run_s",
    "run_basis",
    "weights_gib",
    "peak_gib",
    "peak_delta_gib",
    "load_1m",
)
