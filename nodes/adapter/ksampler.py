"""The original DDIM sampler (trailing/uniform spacing, eta, dynamic rescale) and video guidance rescale,
as host pieces: a KSAMPLER function, a sigma schedule and a CFG function.

The host hands the sampler ComfyUI-scale latents (x_k = x_t * sqrt(1 + sigma^2)) and denoised
estimates computed with its own schedule, whose zero-SNR end is clamped. To reproduce the original
exactly, each step recovers the raw model output from the host's estimate and runs the reference DDIM
update (``dynamicrafter.ddim.ddim_step``) with the variant's exact alpha_bar (alpha_bar[999] = 0 for
v-models).
"""

from __future__ import annotations

import math

import comfy.samplers
import torch
from tqdm.auto import trange

from ...dynamicrafter.config import Spacing, VariantConfig
from ...dynamicrafter.ddim import Pinning, combine_guidance, ddim_step
from ...dynamicrafter.frames import fold_frames, unfold_frames
from ...dynamicrafter.schedule import DiffusionSchedule, ddim_sigma, ddim_timesteps, make_schedule
from .family import COND_FRAMES
from .inputs import SEED_MAX


def raw_output(prediction: str, x_k: torch.Tensor, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
    """Invert the host's ``calculate_denoised``: the model's own output (eps or v)."""
    if prediction == "v":
        return (x_k / (sigma**2 + 1) - denoised) * math.sqrt(sigma**2 + 1) / sigma
    return (x_k - denoised) / sigma


def to_host_denoised(prediction: str, x_k: torch.Tensor, output: torch.Tensor, sigma: float) -> torch.Tensor:
    """The host's ``calculate_denoised`` (sigma_data = 1)."""
    if prediction == "v":
        return x_k / (sigma**2 + 1) - output * sigma / math.sqrt(sigma**2 + 1)
    return x_k - output * sigma


class ExactSchedule:
    """The variant's own alpha_bar and scale_arr, indexed by the timestep the host maps a sigma to."""

    def __init__(self, variant: VariantConfig, model_sampling):
        self.schedule: DiffusionSchedule = make_schedule(variant.schedule)
        self.prediction = variant.schedule.prediction
        self.model_sampling = model_sampling

    def timestep(self, sigma: float) -> int:
        return int(self.model_sampling.timestep(torch.tensor([sigma], dtype=torch.float32)).item())

    def alpha_bar(self, sigma: float) -> torch.Tensor:
        """alpha_bar as a float32 0-dim tensor; sigma 0 is the clean end (1)."""
        if sigma <= 0:
            return torch.tensor(1.0)
        return self.schedule.alphas_cumprod[self.timestep(sigma)]

    def rescale(self, sigma: float, sigma_next: float, last: bool) -> torch.Tensor | None:
        """Dynamic rescale factor scale_arr[t_prev] / scale_arr[t]; 1 at the last step, as in the original."""
        if self.schedule.scale_arr is None or last:
            return None
        scale = self.schedule.scale_arr
        return scale[self.timestep(sigma_next)] / scale[self.timestep(sigma)]


def sample_dynamicrafter_ddim(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    eta: float = 1.0,
    dynamic_rescale: bool = True,
    noise_seed: int | None = None,
    from_noise: bool = True,
):
    """KSAMPLER function: the original DDIM loop over any sigma list, each step the reference ``ddim_step``.

    With the DynamiCrafter schedule the list ends at sigma(t=0) and the result is the original's
    final x (at alpha_bar[0]); a list ending at 0 ends on the clean estimate. ``from_noise``: start from
    the noise alone (the original's x_T), else from the input latent noised to the first step (partial
    denoise). A noise mask pins frames the original sampler's way (``dynamicrafter.ddim.Pinning``).
    """
    extra_args = {} if extra_args is None else extra_args
    base_model = model.inner_model.inner_model
    exact = ExactSchedule(base_model.variant, base_model.model_sampling)
    seed = extra_args.get("seed", 0) if noise_seed is None else noise_seed
    generator = torch.Generator(device="cpu").manual_seed((int(seed) + 1) % (SEED_MAX + 1))
    draw = lambda: torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)  # noqa: E731
    latent = getattr(model, "latent_image", None)
    mask = extra_args.get("denoise_mask")
    pinning = None if mask is None else Pinning(keep=1.0 - mask, latent=latent)
    model_args = {**extra_args, "denoise_mask": None}  # pinning is done here, on the sampler's own x
    s_in = x.new_ones([x.shape[0]])
    x_t = (x - latent if from_noise and latent is not None else x) / math.sqrt(float(sigmas[0]) ** 2 + 1)
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if pinning is not None:
            x_t = pinning.blend(exact.schedule, x_t, exact.timestep(sigma), draw())
        x_k = x_t * math.sqrt(sigma**2 + 1)
        output = raw_output(exact.prediction, x_k, model(x_k, sigmas[i] * s_in, **model_args), sigma)
        factor = exact.rescale(sigma, sigma_next, last=i == len(sigmas) - 2) if dynamic_rescale else None
        a, a_prev = exact.alpha_bar(sigma), exact.alpha_bar(sigma_next)
        x_t, x0 = ddim_step(
            exact.schedule,
            exact.prediction,
            x_t,
            output,
            exact.timestep(sigma),
            a,
            a_prev,
            ddim_sigma(a, a_prev, eta),
            factor,
            draw(),
        )
        if pinning is not None and i == len(sigmas) - 2:
            x_t = pinning.finish(x_t)
        if callback is not None:
            callback({"x": x_t, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": x0})
    return x_t


class DynamiCrafterKSampler(comfy.samplers.KSAMPLER):
    """The DDIM sampler as a host SAMPLER. A run starts from unit-variance noise at its first timestep,
    as the original's does (256's first step is t = 981, below the host's sigma_max, where the host
    would otherwise scale the noise by sigma instead of sqrt(1 + sigma^2))."""

    def __init__(self, eta: float, dynamic_rescale: bool, from_noise: bool | None = True):
        super().__init__(sample_dynamicrafter_ddim, {"eta": eta, "dynamic_rescale": dynamic_rescale})
        self.from_noise = from_noise

    def max_denoise(self, model_wrap, sigmas) -> bool:
        if self.from_noise is not None:
            return self.from_noise
        return starts_from_noise(model_wrap.inner_model.model_sampling, sigmas)

    def sample(
        self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False
    ):
        self.extra_options = {**self.extra_options, "from_noise": self.max_denoise(model_wrap, sigmas)}
        return super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)


def starts_from_noise(model_sampling, sigmas: torch.Tensor) -> bool:
    """Whether a sigma list starts where a full run of the original starts (then from pure noise, as it does).

    That is the top training step, or for ``uniform`` spacing exactly the full grid with as many steps
    (981, 961, ... for 50 steps). Anything else is a partial run: the input latent is noised to its first step
    (a trailing grid over the first M steps whose top lies above the uniform grid's, e.g. M = 850 for 5 steps, too).
    """
    train = len(model_sampling.sigmas)
    timesteps = model_sampling.timestep(sigmas[:-1].float()).round().to(torch.int64).cpu()
    if int(timesteps[0]) >= train - 1:
        return True
    steps = len(sigmas) - 1
    grids = (ddim_timesteps(s, "uniform", train) for s in range(1, train + 1))
    return any(len(grid) == steps and torch.equal(grid.flip(0), timesteps) for grid in grids)


def dynamicrafter_sigmas(model_sampling, steps: int, spacing: Spacing, span: int | None = None) -> torch.Tensor:
    """Host sigmas at the original's DDIM timesteps, descending, ending at sigma(t=0) (not 0).

    ``span``: the grid over the first ``span`` training steps only (partial denoise).
    """
    tau = ddim_timesteps(steps, spacing, span or len(model_sampling.sigmas))
    sigmas = model_sampling.sigmas[tau.flip(0)].float()
    return torch.cat([sigmas, model_sampling.sigmas[:1].float()]).cpu()


def frames_of(conds) -> int:
    """The video length stored by the conditioning node in the processed conds."""
    for cond in conds or []:
        entry = cond.get("model_conds", {}).get(COND_FRAMES)
        if entry is not None:
            return int(entry.cond)
    raise ValueError("DynamiCrafter guidance rescale needs the DynamiCrafter conditioning (frames not found)")


def guided_denoised(
    prediction: str,
    x_k: torch.Tensor,
    sigma: float,
    denoised: list[torch.Tensor],
    frames: int,
    cfg: float,
    guidance_rescale: float,
    image_cfg: float | None = None,
) -> torch.Tensor:
    """The original's CFG (``combine_guidance``) on the host's denoised estimates ``[cond, uncond(, image only)]``:
    formed from the raw model outputs per video ``[B, C, T, h, w]`` (the guidance rescale's std is taken over a
    whole video), returned as the host's denoised estimate."""
    outs = [unfold_frames(raw_output(prediction, x_k, d, sigma), frames) for d in denoised]
    image = outs[2] if len(outs) > 2 else None
    guided = combine_guidance(outs[0], outs[1], cfg, guidance_rescale, image, image_cfg)
    return to_host_denoised(prediction, x_k, fold_frames(guided), sigma)


def video_guidance_rescale(phi: float, prediction: str):
    """A ``sampler_post_cfg_function``: the original's CFG and guidance rescale in model-output space,
    with the std taken per video over (C, T, H, W) (the stock RescaleCFG works per frame).

    A post-CFG function returns the denoised estimate itself; the host's ``sampler_cfg_function``
    protocol (return x - denoised) would lose the estimate to float32 cancellation at the zero-SNR
    start, where x is thousands of times larger than it.
    """

    def post_cfg(args: dict) -> torch.Tensor:
        if args.get("uncond") is None:  # CFG 1: the host skipped the unconditional pass
            return args["denoised"]
        return guided_denoised(
            prediction,
            args["input"],
            float(args["sigma"].flatten()[0]),
            [args["cond_denoised"], args["uncond_denoised"]],
            frames_of(args["cond"]),
            args["cond_scale"],
            phi,
        )

    return post_cfg
