"""Analytic-Init (the CIL paper's start noise) as host pieces: a statistics loader from its own model folder,
the start noise for the DynamiCrafter Sampler, and a NOISE for SamplerCustomAdvanced. The maths is
``dynamicrafter.analytic_init``'s."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass

import comfy.sample
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io
from safetensors import SafetensorError

from ..dynamicrafter.analytic_init import (
    InitStatistics,
    InitStatisticsError,
    analytic_start,
    statistics_from_state_dict,
)
from ..dynamicrafter.frames import fold_frames, unfold_frames
from ..dynamicrafter.schedule import make_schedule
from .adapter.family import COND_FRAMES
from .adapter.inputs import CATEGORY, SEED_MAX
from .adapter.validation import CheckedNode

FOLDER = "dynamicrafter_init_noise"
EXTENSIONS = {".safetensors", ".pt", ".pth", ".ckpt", ".bin"}


def register_folder() -> None:
    """``models/dynamicrafter_init_noise`` (and any extra_model_paths entry of that name), statistics files only."""
    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], EXTENSIONS)


register_folder()

InitNoiseType = io.Custom("DYNAMICRAFTER_INIT_NOISE")


@dataclass(frozen=True)
class AnalyticInit:
    """What the loader node hands on: the statistics, the start step M and the file's name (for messages)."""

    stats: InitStatistics
    start_step: int
    name: str


def read_statistics(path: str) -> InitStatistics:
    """A statistics file through the host's reader (pickles weights-only); every failure names the file."""
    name = os.path.basename(path)
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except pickle.UnpicklingError as error:
        raise InitStatisticsError(
            f"{name}: refused to load: the pickle asks to run code or holds objects other than tensors "
            f"({str(error).splitlines()[0][:160]}). Use the .safetensors statistics or the original .pt file"
        ) from None
    except (SafetensorError, RuntimeError, ValueError, TypeError, OSError, EOFError, KeyError, IndexError) as error:
        raise InitStatisticsError(
            f"{name}: cannot be read as a statistics file ({type(error).__name__}: {str(error)[:160]}); "
            "download it again"
        ) from None
    if not isinstance(sd, Mapping):
        raise InitStatisticsError(f"{name}: holds a {type(sd).__name__}, not a dict of statistics tensors")
    return statistics_from_state_dict(sd, name)


def video_frames(positive) -> int:
    """The video length the DynamiCrafter conditioning node stored with the positive conditioning."""
    for entry in positive or []:
        frames = entry[1].get(COND_FRAMES) if len(entry) > 1 and isinstance(entry[1], dict) else None
        if frames is not None:
            return int(frames)
    raise ValueError(
        "the analytic initial noise needs the DynamiCrafter conditioning: connect the positive output of a "
        "DynamiCrafter conditioning node"
    )


def analytic_noise(model, init: AnalyticInit, samples: torch.Tensor, seed: int, frames: int, batch_index=None):
    """The analytic start x_T in the host's layout ``[B*T, 4, h, w]``, from the seed's standard-normal draw
    (the draw a plain run starts from, so M = 1000 on a zero-terminal-SNR model gives the same video)."""
    if samples.shape[0] % frames:
        raise ValueError(f"the latent holds {samples.shape[0]} frames, not a whole number of {frames}-frame videos")
    init.stats.check_fits(frames, samples.shape[-2], samples.shape[-1])
    variant = model.model.variant
    eps = comfy.sample.prepare_noise(samples, seed, batch_index)
    x_T = analytic_start(make_schedule(variant.schedule), init.stats, init.start_step, unfold_frames(eps, frames))
    return fold_frames(x_T)


class AnalyticNoise:
    """A host NOISE whose draw, scaled as the host scales noise at the first step of a run over the first M
    training steps (DynamiCrafter Scheduler with denoise M/1000, an empty latent), starts the run at the analytic x_T."""

    def __init__(self, model, init: AnalyticInit, seed: int, frames: int):
        self.model, self.init, self.seed, self.frames = model, init, seed, frames

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        x_T = analytic_noise(self.model, self.init, samples, self.seed, self.frames, input_latent.get("batch_index"))
        sigmas = self.model.get_model_object("model_sampling").sigmas
        if self.init.start_step >= len(sigmas):  # the host starts a full run from noise * sqrt(1 + sigma^2)
            return x_T
        sigma = float(sigmas[self.init.start_step - 1])
        return x_T * ((1 + sigma**2) ** 0.5 / sigma)  # the host starts a partial run from latent + sigma * noise


_M_TOOLTIP = (
    "M: the training step the video starts at (1000 = the whole schedule). Starting lower (the paper shows "
    "940 to 820) gives more motion and less of the picture frozen in place; too low loses detail. On the 512 / "
    "1024 models the analytic start at 1000 is plain noise, so pick below 1000 to make a difference."
)


class DynamiCrafterAnalyticInit(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterAnalyticInit",
            display_name="DynamiCrafter Analytic Init Noise",
            category=f"{CATEGORY}/sampling",
            description="Loads the CIL paper's initial-noise statistics (Analytic-Init) and a start step M, for the "
            "DynamiCrafter Sampler's init_noise input: the video starts at step M from noise matched to real videos, "
            "for more motion (made for the CIL no-watermark models, works with the original ones too).",
            inputs=[
                io.Combo.Input(
                    "statistics",
                    options=folder_paths.get_filename_list(FOLDER),
                    tooltip="A statistics file in models/dynamicrafter_init_noise: initial_noise_512 for 512x320, "
                    "initial_noise_1024 for 1024x576 (.pt of GraceZhao/DynamiCrafter-Analytic-Init, or Kijai's "
                    ".safetensors copies).",
                ),
                io.Int.Input("M", default=940, min=1, max=1000, tooltip=_M_TOOLTIP),
            ],
            outputs=[InitNoiseType.Output(display_name="init_noise")],
        )

    @classmethod
    def execute(cls, statistics: str, M: int) -> io.NodeOutput:  # noqa: N803 (the paper's name)
        path = folder_paths.get_full_path(FOLDER, statistics)
        if path is None:
            raise FileNotFoundError(f"{statistics} was not found in models/{FOLDER}")
        return io.NodeOutput(AnalyticInit(read_statistics(path), M, statistics))


class DynamiCrafterAnalyticNoise(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterAnalyticNoise",
            display_name="DynamiCrafter Analytic Noise",
            category=f"{CATEGORY}/sampling",
            description="The analytic initial noise as a NOISE for SamplerCustomAdvanced. Use it with the "
            "DynamiCrafter Scheduler at denoise = M / 1000 and the conditioning node's empty latent.",
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter model (its noise schedule)."),
                io.Conditioning.Input("positive", tooltip="From the DynamiCrafter conditioning node (its frames)."),
                InitNoiseType.Input("init_noise", tooltip="From DynamiCrafter Analytic Init Noise."),
                io.Int.Input(
                    "noise_seed",
                    default=123,
                    min=0,
                    max=SEED_MAX,
                    control_after_generate=True,
                    tooltip="Random seed of the start noise.",
                ),
            ],
            outputs=[io.Noise.Output()],
        )

    @classmethod
    def execute(cls, model, positive, init_noise, noise_seed) -> io.NodeOutput:
        if getattr(model.model, "variant", None) is None:
            raise ValueError("this node needs a DynamiCrafter model: load it with a DynamiCrafter loader node")
        return io.NodeOutput(AnalyticNoise(model, init_noise, noise_seed, video_frames(positive)))


NODES = [DynamiCrafterAnalyticInit, DynamiCrafterAnalyticNoise]
