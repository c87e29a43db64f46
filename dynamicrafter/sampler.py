"""The original DDIM sampler with classifier-free guidance, in plain PyTorch.

This is the reference the host-integrated sampler is tested against. It follows the original
``DDIMSampler.p_sample_ddim`` step by step: separate conditional/unconditional calls, guidance
rescale in model-output space, dynamic rescale of x0 for v-models, fresh noise at every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .config import Prediction, SamplingDefaults
from .schedule import DiffusionSchedule, ddim_parameters, v_to_eps, v_to_x0

ModelFn = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]
"""``model(x, t, cond) -> output``; ``t`` is an int64 tensor of shape [B]."""


@dataclass(frozen=True)
class DDIMSettings(SamplingDefaults):
    """A variant's sampling defaults plus whether x0 is dynamically rescaled."""

    dynamic_rescale: bool = True


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Mix the guided output with a copy rescaled to the conditional output's std (per sample: over every
    dimension but the first)."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1 - phi) * guided


def guided_output(model: ModelFn, x: torch.Tensor, t: torch.Tensor, cond: object, uncond: object | None,
                  cfg: float, guidance_rescale: float) -> torch.Tensor:
    out_cond = model(x, t, cond)
    if uncond is None or cfg == 1.0:
        return out_cond
    out_uncond = model(x, t, uncond)
    out = out_uncond + cfg * (out_cond - out_uncond)
    if guidance_rescale > 0:
        out = rescale_guidance(out, out_cond, guidance_rescale)
    return out


def ddim_step(schedule: DiffusionSchedule, prediction: Prediction, x: torch.Tensor, output: torch.Tensor,
              t: int, a_t: torch.Tensor, a_prev: torch.Tensor, sigma: torch.Tensor,
              rescale: torch.Tensor | None, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update from the model's raw ``output`` at timestep ``t`` (alpha_bar ``a_t``); returns
    (x_prev, x0_pred). ``rescale``: the dynamic-rescale factor of x0, or None."""
    if prediction == "v":
        eps = v_to_eps(schedule, x, output, t)
        x0 = v_to_x0(schedule, x, output, t)
    else:
        eps = output
        x0 = (x - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()
    if rescale is not None:
        x0 = x0 * rescale
    direction = (1.0 - a_prev - sigma ** 2).sqrt() * eps
    return a_prev.sqrt() * x0 + direction + sigma * noise, x0


def ddim_sample(model: ModelFn, x_T: torch.Tensor, schedule: DiffusionSchedule, prediction: Prediction,
                settings: DDIMSettings, cond: object, uncond: object | None = None,
                noise: Callable[[int], torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Run the sampler, yielding ``(iteration, x, x0_pred)`` after every step (the last x is the result).

    ``noise(i)`` supplies the standard-normal draw of iteration i; by default it is drawn from
    ``generator`` with the shape of ``x_T`` (drawn even when eta is 0, as the original does).
    """
    params = ddim_parameters(schedule, settings.steps, settings.spacing, settings.eta)
    use_rescale = settings.dynamic_rescale and params.scale is not None
    x = x_T
    n = len(params.timesteps)
    for i in range(n):
        k = n - 1 - i
        t = int(params.timesteps[k])
        t_batch = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
        out = guided_output(model, x, t_batch, cond, uncond, settings.cfg, settings.guidance_rescale)
        z = noise(i) if noise is not None else torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        rescale = params.scale_prev[k] / params.scale[k] if use_rescale else None
        # Per-step constants stay 0-dim CPU tensors: they broadcast onto any device.
        x, x0 = ddim_step(schedule, prediction, x, out, t, params.alphas[k], params.alphas_prev[k],
                          params.sigmas[k], rescale, z)
        yield i, x, x0
