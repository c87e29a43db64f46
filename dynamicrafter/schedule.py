"""The DDPM schedule, DDIM timesteps and prediction-type conversions of the original code.

Arrays are computed in float64 and stored as float32, as the original ``register_schedule`` does, so
they equal the buffers inside released checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ScheduleConfig, Spacing


def linear_betas(config: ScheduleConfig) -> torch.Tensor:
    """SD's "linear" schedule: squares of a linspace between the square roots (float64)."""
    return torch.linspace(config.linear_start**0.5, config.linear_end**0.5, config.timesteps, dtype=torch.float64) ** 2


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has zero SNR (Lin et al. 2023, Alg. 1)."""
    sqrt_bar = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_bar[0].clone(), sqrt_bar[-1].clone()
    sqrt_bar = (sqrt_bar - last) * (first / (first - last))
    bar = sqrt_bar**2
    alphas = torch.cat([bar[:1], bar[1:] / bar[:-1]])
    return 1.0 - alphas


@dataclass(frozen=True)
class DiffusionSchedule:
    """The float32 buffers the original model registers (names as in the checkpoint)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    scale_arr: torch.Tensor | None

    def buffers(self) -> dict[str, torch.Tensor]:
        """The schedule as a checkpoint stores it (``scale_arr`` only with dynamic rescale)."""
        out = dict(vars(self))
        if out["scale_arr"] is None:
            del out["scale_arr"]
        return out


def dynamic_rescale_array(config: ScheduleConfig) -> torch.Tensor:
    """Factor applied to x0 in training: 1 -> base_scale over ``turning_step`` steps, then constant."""
    ramp = torch.linspace(1.0, config.base_scale, config.turning_step, dtype=torch.float64)
    flat = torch.full((config.timesteps,), config.base_scale, dtype=torch.float64)
    return torch.cat([ramp, flat]).float()


def make_schedule(config: ScheduleConfig) -> DiffusionSchedule:
    betas = linear_betas(config)
    if config.zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    alphas = 1.0 - betas
    bar = torch.cumprod(alphas, dim=0)
    bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), bar[:-1]])
    posterior_variance = betas * (1.0 - bar_prev) / (1.0 - bar)
    if config.prediction == "v":
        recip = recipm1 = torch.zeros_like(bar)
    else:
        recip, recipm1 = (1.0 / bar).sqrt(), (1.0 / bar - 1).sqrt()
    f32 = lambda t: t.to(torch.float32)  # noqa: E731
    return DiffusionSchedule(
        betas=f32(betas),
        alphas_cumprod=f32(bar),
        alphas_cumprod_prev=f32(bar_prev),
        sqrt_alphas_cumprod=f32(bar.sqrt()),
        sqrt_one_minus_alphas_cumprod=f32((1.0 - bar).sqrt()),
        log_one_minus_alphas_cumprod=f32(torch.log(1.0 - bar)),
        sqrt_recip_alphas_cumprod=f32(recip),
        sqrt_recipm1_alphas_cumprod=f32(recipm1),
        posterior_variance=f32(posterior_variance),
        posterior_log_variance_clipped=f32(torch.log(posterior_variance.clamp(min=1e-20))),
        posterior_mean_coef1=f32(betas * bar_prev.sqrt() / (1.0 - bar)),
        posterior_mean_coef2=f32((1.0 - bar_prev) * alphas.sqrt() / (1.0 - bar)),
        scale_arr=dynamic_rescale_array(config) if config.dynamic_rescale else None,
    )


def ddim_timesteps(steps: int, spacing: Spacing, train_steps: int = 1000) -> torch.Tensor:
    """DDIM timesteps in ascending order, exactly as the original ``make_ddim_timesteps``.

    ``uniform`` is ``range(0, N, N // S) + 1`` and so runs more than S steps when S does not divide N
    (the original's behaviour); ``uniform_trailing`` rounds half to even and ends at N - 1. Where
    ``uniform`` would reach t = N (S = 3, 9, 27, 37, ...: the original fails there with an index
    error) that step is left out.
    """
    if steps < 1:
        raise ValueError(f"DDIM needs at least 1 step, got {steps}")
    if steps > train_steps:
        raise ValueError(f"{steps} DDIM steps do not fit in {train_steps} training steps; use at most {train_steps}")
    if spacing == "uniform":
        tau = torch.arange(0, train_steps, train_steps // steps, dtype=torch.int64) + 1
        return tau[tau < train_steps]
    if spacing == "uniform_trailing":
        stride = train_steps / steps
        points = torch.arange(train_steps, 0, -stride, dtype=torch.float64).round()
        return points.flip(0).to(torch.int64) - 1
    raise ValueError(f"unknown DDIM spacing {spacing!r}; use 'uniform' or 'uniform_trailing'")


@dataclass(frozen=True)
class DDIMParameters:
    """Per-step constants of the original sampler, in ascending-t index order."""

    timesteps: torch.Tensor
    alphas: torch.Tensor
    alphas_prev: torch.Tensor
    sigmas: torch.Tensor
    scale: torch.Tensor | None
    scale_prev: torch.Tensor | None


def ddim_sigma(alpha: torch.Tensor, alpha_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """The DDIM step's noise level from float32 alpha_bar values (any shape), computed as the original does.

    The original mixes float32 torch and float64 numpy here: 1 - a is formed in float32, the rest in float64.
    """
    a, a_prev = alpha.double(), alpha_prev.double()
    return (eta * ((1 - a_prev) / (1 - alpha).double() * (1 - a / a_prev)).sqrt()).float()


def denoise_span(denoise: float, train_steps: int = 1000) -> int:
    """How many training steps a partial run's DDIM grid spans: ``round(denoise * N)``, 0 = no sampling.

    The grid is the original's laid over ``[0, span)`` instead of ``[0, N)`` (Kijai's wrapper's ``ddpm_from``),
    so a run starts part-way down the noise schedule and keeps the original spacing below it.
    """
    if not 0.0 <= denoise <= 1.0:
        raise ValueError(f"denoise must be between 0 and 1, got {denoise}")
    return round(denoise * train_steps)


def ddim_parameters(
    schedule: DiffusionSchedule, steps: int, spacing: Spacing, eta: float, span: int | None = None
) -> DDIMParameters:
    """a_k = alpha_bar[tau_k], a_prev (alpha_bar[0] for k = 0) and sigma (from float64, as the original).

    ``span``: lay the grid over the first ``span`` training steps only (partial denoise, see ``denoise_span``).
    """
    tau = ddim_timesteps(steps, spacing, span or len(schedule.alphas_cumprod))
    bar = schedule.alphas_cumprod
    alphas = bar[tau]
    alphas_prev = torch.cat([bar[:1], bar[tau[:-1]]])
    sigmas = ddim_sigma(alphas, alphas_prev, eta)
    scale = scale_prev = None
    if schedule.scale_arr is not None:
        scale = schedule.scale_arr[tau]
        scale_prev = torch.cat([scale[:1], schedule.scale_arr[tau[:-1]]])
    return DDIMParameters(tau, alphas, alphas_prev, sigmas, scale, scale_prev)


def q_sample(schedule: DiffusionSchedule, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    """x0 noised to step t (the original ``q_sample``, with the float32 buffers)."""
    return schedule.sqrt_alphas_cumprod[t] * x0 + schedule.sqrt_one_minus_alphas_cumprod[t] * noise


def v_to_eps(schedule: DiffusionSchedule, x: torch.Tensor, v: torch.Tensor, t: int) -> torch.Tensor:
    return schedule.sqrt_alphas_cumprod[t] * v + schedule.sqrt_one_minus_alphas_cumprod[t] * x


def v_to_x0(schedule: DiffusionSchedule, x: torch.Tensor, v: torch.Tensor, t: int) -> torch.Tensor:
    return schedule.sqrt_alphas_cumprod[t] * x - schedule.sqrt_one_minus_alphas_cumprod[t] * v
