"""Analytic-Init: the start noise of "Identifying and Solving Conditional Image Leakage in Image-to-Video
Diffusion Model" (thu-ml/cond-image-leakage), in plain PyTorch.

A run starts at training step ``M`` instead of the last one, from the Gaussian that best matches the true
marginal there (given the training videos' mean ``E[X0]`` and the trace of their covariance per element):
``x_T = sqrt(a) * E[X0] + sqrt(1 - a + a * Tr_Cov_d) * eps`` with ``a = alpha_bar[M - 1]``, then the DDIM grid
laid over the first ``M`` training steps (the reference sampler's ``ddpm_from=M``, the same grid as partial denoise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .schedule import DiffusionSchedule

MEAN_KEY = "Expectation_X0"
TRACE_KEY = "Tr_Cov_d"
LATENT_CHANNELS = 4
VAE_FACTOR = 8


class InitStatisticsError(ValueError):
    """A statistics file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class InitStatistics:
    """``mean``: E[X0] as ``[1, 4, T, h, w]`` (model-scale latents, the released files' layout);
    ``trace``: Tr_Cov_d as a float32 0-dim tensor."""

    mean: torch.Tensor
    trace: torch.Tensor

    @property
    def frames(self) -> int:
        return self.mean.shape[2]

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.mean.shape[3], self.mean.shape[4]

    def describe(self) -> str:
        h, w = self.latent_size
        return f"{self.frames} frames at {w * VAE_FACTOR}x{h * VAE_FACTOR} (width x height)"

    def check_fits(self, frames: int, latent_h: int, latent_w: int) -> None:
        """Refuse a video the statistics were not measured for, saying which size they fit."""
        if (frames, latent_h, latent_w) != (self.frames, *self.latent_size):
            raise InitStatisticsError(
                f"these initial-noise statistics are for {self.describe()}, but the video is {frames} frames at "
                f"{latent_w * VAE_FACTOR}x{latent_h * VAE_FACTOR}; set the conditioning node to that size, or load "
                "the statistics file made for this size (initial_noise_512 for 512x320, initial_noise_1024 for "
                "1024x576)"
            )


def statistics_from_state_dict(sd: Mapping[str, torch.Tensor], name: str) -> InitStatistics:
    """Check a loaded statistics file (``name`` is for messages) and return it in float32."""
    missing = [k for k in (MEAN_KEY, TRACE_KEY) if k not in sd]
    if missing:
        raise InitStatisticsError(
            f"{name}: not an Analytic-Init statistics file (no {' / '.join(missing)}; it holds "
            f"{sorted(sd)[:4]}). Use initial_noise_512 / initial_noise_1024 of GraceZhao/DynamiCrafter-Analytic-Init"
        )
    mean, trace = sd[MEAN_KEY], sd[TRACE_KEY]
    if not isinstance(mean, torch.Tensor) or not isinstance(trace, torch.Tensor):
        raise InitStatisticsError(f"{name}: {MEAN_KEY} and {TRACE_KEY} must be tensors")
    if mean.ndim != 5 or mean.shape[0] != 1 or mean.shape[1] != LATENT_CHANNELS or min(mean.shape) < 1:
        raise InitStatisticsError(
            f"{name}: {MEAN_KEY} has shape {list(mean.shape)}; expected [1, {LATENT_CHANNELS}, frames, height/8, "
            "width/8] (e.g. [1, 4, 16, 40, 64] for 512x320)"
        )
    if trace.numel() != 1:
        raise InitStatisticsError(f"{name}: {TRACE_KEY} must be one number, got shape {list(trace.shape)}")
    mean, trace = mean.float(), trace.float().reshape(())
    if not bool(torch.isfinite(mean).all()) or not math.isfinite(float(trace)) or float(trace) < 0:
        raise InitStatisticsError(f"{name}: the statistics hold NaN, infinite or negative values; the file is damaged")
    return InitStatistics(mean.contiguous(), trace)


def analytic_start(
    schedule: DiffusionSchedule, stats: InitStatistics, start_step: int, eps: torch.Tensor
) -> torch.Tensor:
    """x_T of a run starting at training step ``start_step`` (M, 1..N) from the standard normal ``eps``
    (``[B, 4, T, h, w]``; the statistics broadcast over B). Computed in float32 as the reference does."""
    steps = len(schedule.sqrt_alphas_cumprod)
    if not 1 <= start_step <= steps:
        raise ValueError(f"the start step M must be between 1 and {steps}, got {start_step}")
    sqrt_a = schedule.sqrt_alphas_cumprod[start_step - 1]
    a = sqrt_a**2
    sigma = torch.sqrt(1 - a + a * stats.trace)
    mean = stats.mean.to(eps.device)
    return (sqrt_a.to(eps.device) * mean + sigma.to(eps.device) * eps.float()).to(eps.dtype)
