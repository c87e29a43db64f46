"""The original DDIM sampler with classifier-free guidance, in plain PyTorch.

This is the reference the host-integrated sampler is tested against. It follows the original
``DDIMSampler.p_sample_ddim`` step by step: separate conditional/unconditional calls, guidance
rescale in model-output space, dynamic rescale of x0 for v-models, fresh noise at every step.
Controls: separate text and image guidance (the original ``DDIMSampler_multicond``), partial denoise
(the grid over the first training steps only, as Kijai's wrapper's ``ddpm_from``) and frame pinning
(the original sampler's ``mask`` / ``x0`` path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .config import Prediction, SamplingDefaults
from .schedule import DiffusionSchedule, ddim_parameters, q_sample, v_to_eps, v_to_x0

ModelFn = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]
"""``model(x, t, cond) -> output``; ``t`` is an int64 tensor of shape [B]."""


@dataclass(frozen=True)
class DDIMSettings(SamplingDefaults):
    """A variant's sampling defaults plus whether x0 is dynamically rescaled, and the controls.

    ``image_cfg``: the image guidance scale, apart from ``cfg`` (then the text guidance scale); None = one scale.
    ``span``: lay the DDIM grid over the first ``span`` training steps (partial denoise); None = all.
    """

    dynamic_rescale: bool = True
    image_cfg: float | None = None
    span: int | None = None


@dataclass(frozen=True)
class Pinning:
    """Frames kept from a given latent (``keep`` 1 = keep, 0 = generate, broadcastable to the latent).

    Before every step the kept part is replaced by ``latent`` noised to that step's timestep, as the original
    sampler's mask path does; the result gives the kept part back exactly as given.
    """

    keep: torch.Tensor
    latent: torch.Tensor

    def blend(self, schedule: DiffusionSchedule, x: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        return self.keep * q_sample(schedule, self.latent, t, noise) + (1.0 - self.keep) * x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.keep * self.latent + (1.0 - self.keep) * x


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Mix the guided output with a copy rescaled to the conditional output's std (per sample: over every
    dimension but the first)."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1 - phi) * guided


def combine_guidance(
    out_cond: torch.Tensor,
    out_uncond: torch.Tensor,
    cfg: float,
    guidance_rescale: float,
    out_image: torch.Tensor | None = None,
    image_cfg: float | None = None,
) -> torch.Tensor:
    """CFG in model-output space, then guidance rescale toward the conditional output (per sample).

    With ``out_image`` (empty text, the image kept) the original multi-condition rule:
    ``uncond + image_cfg * (image - uncond) + cfg * (cond - image)``; ``image_cfg == cfg`` is plain CFG.
    """
    if out_image is None:
        out = out_uncond + cfg * (out_cond - out_uncond)
    else:
        out = out_uncond + image_cfg * (out_image - out_uncond) + cfg * (out_cond - out_image)
    if guidance_rescale > 0:
        out = rescale_guidance(out, out_cond, guidance_rescale)
    return out


def guided_output(
    model: ModelFn,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: object,
    uncond: object | None,
    cfg: float,
    guidance_rescale: float,
    image_only: object | None = None,
    image_cfg: float | None = None,
) -> torch.Tensor:
    """``image_only``: the conditioning with empty text and the image kept, for a separate ``image_cfg``."""
    out_cond = model(x, t, cond)
    if uncond is None or cfg == 1.0:
        return out_cond
    out_uncond = model(x, t, uncond)
    out_image = model(x, t, image_only) if image_only is not None and image_cfg is not None else None
    return combine_guidance(out_cond, out_uncond, cfg, guidance_rescale, out_image, image_cfg)


def ddim_step(
    schedule: DiffusionSchedule,
    prediction: Prediction,
    x: torch.Tensor,
    output: torch.Tensor,
    t: int,
    a_t: torch.Tensor,
    a_prev: torch.Tensor,
    sigma: torch.Tensor,
    rescale: torch.Tensor | None,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
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
    direction = (1.0 - a_prev - sigma**2).sqrt() * eps
    return a_prev.sqrt() * x0 + direction + sigma * noise, x0


def ddim_sample(
    model: ModelFn,
    x_T: torch.Tensor,
    schedule: DiffusionSchedule,
    prediction: Prediction,
    settings: DDIMSettings,
    cond: object,
    uncond: object | None = None,
    noise: Callable[[int], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    image_only: object | None = None,
    pinning: Pinning | None = None,
    pin_noise: Callable[[int], torch.Tensor] | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Run the sampler, yielding ``(iteration, x, x0_pred)`` after every step (the last x is the result).

    ``noise(i)`` supplies the standard-normal draw of iteration i; by default it is drawn from
    ``generator`` with the shape of ``x_T`` (drawn even when eta is 0, as the original does). With
    ``pinning``, ``pin_noise(i)`` (by default drawn before ``noise(i)``) noises the kept frames.
    A partial run (``settings.span``) starts from ``x_T`` = the start latent noised to its first timestep.
    """
    params = ddim_parameters(schedule, settings.steps, settings.spacing, settings.eta, settings.span)
    use_rescale = settings.dynamic_rescale and params.scale is not None
    draw = lambda: torch.randn(x_T.shape, generator=generator, dtype=x_T.dtype, device=x_T.device)  # noqa: E731
    x = x_T
    n = len(params.timesteps)
    for i in range(n):
        k = n - 1 - i
        t = int(params.timesteps[k])
        if pinning is not None:
            x = pinning.blend(schedule, x, t, pin_noise(i) if pin_noise is not None else draw())
        t_batch = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
        out = guided_output(
            model, x, t_batch, cond, uncond, settings.cfg, settings.guidance_rescale, image_only, settings.image_cfg
        )
        z = noise(i) if noise is not None else draw()
        rescale = params.scale_prev[k] / params.scale[k] if use_rescale else None
        # Per-step constants stay 0-dim CPU tensors: they broadcast onto any device.
        x, x0 = ddim_step(
            schedule, prediction, x, out, t, params.alphas[k], params.alphas_prev[k], params.sigmas[k], rescale, z
        )
        if pinning is not None and i == n - 1:
            x = pinning.finish(x)
        yield i, x, x0
