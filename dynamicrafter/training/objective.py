"""The original's training loss (``lvdm/models/ddpm3d.py``: ``LatentVisualDiffusion.get_batch_input``,
``LatentDiffusion.forward`` and ``p_losses``), on cached encoder outputs.

One step, for a batch of B videos of T frames:

* a timestep ``t ~ U{0..999}`` and Gaussian noise per video; the clean latent is multiplied by
  ``scale_arr[t]`` first where the variant uses dynamic rescale (512, 1024, interp);
* CFG dropout from one uniform draw ``r`` per video and ``p = uncond_prob``: ``r < 2p`` replaces the text by
  the embedding of ``""``; ``p <= r < 3p`` zeroes the conditioning picture before CLIP vision (its tokens
  become those of an all-zero picture), so ``r < p`` drops the text only, ``p <= r < 2p`` both and
  ``2p <= r < 3p`` the picture only; the image latent (``c_concat``) is never dropped;
* the conditioning frame: 0, or one uniform frame per batch with ``rand_cond_frame``; it feeds CLIP vision and
  the image latent on every frame; the interpolation model gets frames 0 and T-1 in the image latent (zeros
  between) and CLIP of frame 0;
* target ``noise`` (eps) or ``sqrt(abar) noise - sqrt(1 - abar) x0`` (v); loss = mean squared error per video,
  averaged over the batch (the original's ``logvar`` is 0 and its ELBO weight 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..config import VariantConfig
from ..schedule import DiffusionSchedule, make_schedule

Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``predict(x_noisy, timesteps, concat, text, clip_tokens, fs) -> eps or v``, videos ``[B, 4, T, h, w]``,
``clip_tokens`` the raw CLIP vision tokens ``[B, 257, D]`` (the Resampler belongs to the trained network)."""

TRAINING_RECIPES: dict[str, tuple[float, bool]] = {
    "256": (0.2, False),
    "512": (0.05, True),
    "1024": (0.05, True),
    "512_interp": (0.05, False),
}
"""``(uncond_prob, rand_cond_frame)`` per variant: ``configs/training_512_v1.0/config.yaml``,
``config_interp.yaml``, ``configs/training_1024_v1.0``; 256 has no training config, so the class defaults."""


@dataclass(frozen=True)
class ObjectiveSettings:
    """What a variant's training step does beyond its schedule."""

    prediction: str
    uncond_prob: float
    rand_cond_frame: bool
    interpolation: bool

    @classmethod
    def for_variant(cls, variant: VariantConfig, uncond_prob: float | None = None) -> ObjectiveSettings:
        default_prob, rand_frame = TRAINING_RECIPES.get(variant.name, (0.05, not variant.interpolation))
        return cls(
            prediction=variant.schedule.prediction,
            uncond_prob=default_prob if uncond_prob is None else uncond_prob,
            rand_cond_frame=rand_frame and not variant.interpolation,
            interpolation=variant.interpolation,
        )


@dataclass
class ClipBatch:
    """Cached encoder outputs of B training clips (one row per clip)."""

    latents: torch.Tensor
    """``[B, 4, T, h, w]``, the VAE latents already multiplied by the scale factor (0.18215)."""
    text: torch.Tensor
    """``[B, L, C]`` caption embeddings."""
    empty_text: torch.Tensor
    """``[1 or B, L, C]`` the embedding of ``""``."""
    clip_frames: torch.Tensor
    """``[B, F, N, D]`` CLIP vision tokens of the clip's frames (``F = T`` with a random conditioning frame,
    else at least frame 0)."""
    clip_blank: torch.Tensor
    """``[1 or B, N, D]`` CLIP vision tokens of an all-zero picture (mid-gray in [-1, 1])."""
    fs: torch.Tensor
    """``[B]`` the fs input: the frame stride (256) or the clip's fps (the others)."""

    @property
    def size(self) -> int:
        return self.latents.shape[0]


@dataclass
class Draws:
    """The random numbers of one training step (the original's RNG calls, made explicit)."""

    timesteps: torch.Tensor
    """``[B]`` long, uniform in ``[0, 1000)``."""
    noise: torch.Tensor
    """like the latents."""
    dropout: torch.Tensor
    """``[B]`` uniform in ``[0, 1)``; a value of 1 keeps both conditions."""
    cond_frame: int = 0


def draw(batch: ClipBatch, settings: ObjectiveSettings, generator: torch.Generator, timesteps: int = 1000) -> Draws:
    """The step's random numbers from ``generator`` (CPU; moved to the latents' device)."""
    latents = batch.latents
    frames = latents.shape[2]
    t = torch.randint(0, timesteps, (batch.size,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    dropout = torch.rand(batch.size, generator=generator, dtype=torch.float32)
    cond_frame = int(torch.randint(0, frames, (1,), generator=generator)) if settings.rand_cond_frame else 0
    device = latents.device
    return Draws(t.to(device), noise.to(device=device, dtype=latents.dtype), dropout.to(device), cond_frame)


def dropout_masks(dropout: torch.Tensor, uncond_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(drop_text, drop_image)`` booleans ``[B]``: the original's three-way split of one uniform draw."""
    drop_text = dropout < 2 * uncond_prob
    drop_image = (dropout >= uncond_prob) & (dropout < 3 * uncond_prob)
    return drop_text, drop_image


def conditioning(
    batch: ClipBatch, draws: Draws, settings: ObjectiveSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(concat, text, clip_tokens)`` the network reads: image latent per frame, caption, CLIP tokens."""
    z = batch.latents
    drop_text, drop_image = dropout_masks(draws.dropout, settings.uncond_prob)
    text = torch.where(drop_text[:, None, None], batch.empty_text.to(batch.text.dtype), batch.text)
    index = draws.cond_frame
    if index >= batch.clip_frames.shape[1]:
        raise ValueError(f"conditioning frame {index} has no cached CLIP tokens ({batch.clip_frames.shape[1]} frames)")
    tokens = batch.clip_frames[:, index]
    tokens = torch.where(drop_image[:, None, None], batch.clip_blank.to(tokens.dtype), tokens)
    if settings.interpolation:
        concat = torch.zeros_like(z)
        concat[:, :, 0] = z[:, :, 0]
        concat[:, :, -1] = z[:, :, -1]
    else:
        concat = z[:, :, index : index + 1].expand_as(z)
    return concat, text, tokens


def _per_video(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def noised(
    schedule: DiffusionSchedule, latents: torch.Tensor, draws: Draws, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_noisy, target)``: the (dynamically rescaled) clean latent noised at ``t``, and eps or v."""
    t = draws.timesteps
    x0 = latents
    if schedule.scale_arr is not None:
        x0 = x0 * _per_video(schedule.scale_arr.to(latents.device)[t], x0)
    a = _per_video(schedule.sqrt_alphas_cumprod.to(latents.device)[t], x0)
    s = _per_video(schedule.sqrt_one_minus_alphas_cumprod.to(latents.device)[t], x0)
    noise = draws.noise
    x_noisy = a * x0 + s * noise
    target = noise if prediction == "eps" else a * noise - s * x0
    return x_noisy, target


def training_loss(
    predict: Predictor, batch: ClipBatch, draws: Draws, settings: ObjectiveSettings, schedule: DiffusionSchedule
) -> torch.Tensor:
    """The original's training loss for one step (a scalar; gradients flow into ``predict``'s weights)."""
    x_noisy, target = noised(schedule, batch.latents, draws, settings.prediction)
    concat, text, tokens = conditioning(batch, draws, settings)
    out = predict(x_noisy, draws.timesteps, concat, text, tokens, batch.fs)
    per_video = (out.float() - target.float()).pow(2).mean(dim=tuple(range(1, out.dim())))
    return per_video.mean()


def variant_schedule(variant: VariantConfig) -> DiffusionSchedule:
    """The variant's training schedule (with ``scale_arr`` where it uses dynamic rescale)."""
    return make_schedule(variant.schedule)


def network_predictor(unet: torch.nn.Module, resampler: torch.nn.Module) -> Predictor:
    """The predictor of a plain-PyTorch UNet and Resampler (tests, benchmarks): the original's hybrid
    conditioning, ``[x_noisy ; concat]`` in channels and ``[text ; Resampler(CLIP)]`` as context."""

    def predict(x, timesteps, concat, text, clip_tokens, fs):
        return unet(torch.cat([x, concat], dim=1), timesteps, text, fs, image_context=resampler(clip_tokens))

    return predict
