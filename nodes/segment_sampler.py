"""What both long-video nodes sample with: their settings, and the sampler of one 16-frame segment after another
(the DynamiCrafter Sampler's model patch, schedule and DDIM sampler, one progress bar over every segment)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.sample
import comfy.utils
import latent_preview
import torch

from ..dynamicrafter.chain import segment_seed
from .adapter.inputs import CATEGORY
from .sampler import AUTO, ddim_sampler, sampling_inputs, schedule_sigmas, with_guidance_rescale

log = logging.getLogger(__name__)

LONG_CATEGORY = f"{CATEGORY}/long video"


@dataclass(frozen=True)
class SamplingSettings:
    """The DynamiCrafter Sampler's settings; segment ``i`` samples with ``segment_seed(seed, i)``."""

    seed: int
    steps: int
    cfg: float
    eta: float
    guidance_rescale: float


class SegmentSampler:
    """Samples and decodes segments one after another, with one progress bar over all of them.

    Cancel is honoured between segments (and inside each, through the progress hook the host installs).
    """

    def __init__(self, model, vae, settings: SamplingSettings, segments: int) -> None:
        self.vae, self.settings, self.segments = vae, settings, segments
        self._patched = with_guidance_rescale(model, settings.guidance_rescale)
        self._sigmas = schedule_sigmas(self._patched, settings.steps, AUTO)
        self._sampler = ddim_sampler(self._patched, settings.eta, AUTO)
        self._progress = comfy.utils.ProgressBar(segments * self.steps)
        self._previewer = latent_preview.get_previewer(self._patched.load_device, self._patched.model.latent_format)

    @property
    def steps(self) -> int:
        return len(self._sigmas) - 1

    def sample(self, index: int, positive, negative, latent: dict) -> torch.Tensor:
        """Latent samples (frames as batch, VAE scale) of segment ``index``."""
        mm.throw_exception_if_processing_interrupted()
        seed = segment_seed(self.settings.seed, index)
        samples = comfy.sample.fix_empty_latent_channels(self._patched, latent["samples"])
        noise = comfy.sample.prepare_noise(samples, seed)
        done = index * self.steps

        def callback(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
            preview = self._previewer.decode_latent_to_preview_image("JPEG", x0) if self._previewer else None
            self._progress.update_absolute(done + step + 1, self.segments * self.steps, preview)

        log.info("DynamiCrafter long video: clip %d of %d (seed %d)", index + 1, self.segments, seed)
        return comfy.sample.sample_custom(
            self._patched,
            noise,
            self.settings.cfg,
            self._sampler,
            self._sigmas,
            positive,
            negative,
            samples,
            callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
            seed=seed,
        )

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """IMAGE frames ``[T, H, W, 3]`` of one segment's latents."""
        images = self.vae.decode(samples)
        return images.reshape(-1, *images.shape[-3:]).to(mm.intermediate_device())


def segment_sampling_inputs() -> list:
    """The sampler's inputs, with the seed and steps explained per clip."""
    return sampling_inputs(
        seed_tooltip="Random seed; clip i uses seed + 2*i, so clips never share noise.",
        steps_tooltip="DDIM steps per clip; the original uses 50.",
    )
