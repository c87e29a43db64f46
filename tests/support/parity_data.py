"""Access to the golden outputs of the original implementation (``tests/data/parity`` or ``$DYNAMICRAFTER_PARITY_DIR``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from dynamicrafter.checkpoint import DynamiCrafterCheckpoint, checkpoint_from_state_dict
from dynamicrafter.config import ScheduleConfig
from dynamicrafter.resampler import Resampler
from dynamicrafter.unet import DynamiCrafterUNet


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| relative to the spread (std) of the expected tensor."""
    expected = expected.double()
    return float((actual.double() - expected).abs().max() / expected.std().clamp_min(1e-12))


def relative_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return float((actual.double() - expected).norm() / expected.norm().clamp_min(1e-12))


@dataclass
class FixtureSet:
    """One fixture folder (e.g. small_512): its config, checkpoint and tensors."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def config(self) -> dict:
        return json.loads((self.folder / "config.json").read_text())

    def tensors(self, stem: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / f"{stem}.safetensors"))

    def checkpoint(self, variant: str | None = None) -> DynamiCrafterCheckpoint:
        """weights + buffers as one state dict, loaded through the pack's own checkpoint code as ``variant``
        (default: the one the fixture's schedule is: 256 for eps, else 512)."""
        sd = {**self.tensors("weights"), **self.tensors("buffers")}
        if variant is None:
            variant = "256" if self.config["diffusion"]["parameterization"] == "eps" else "512"
        return checkpoint_from_state_dict(self.folder / "weights.safetensors", sd, variant)

    def schedule_config(self) -> ScheduleConfig:
        d = self.config["diffusion"]
        return ScheduleConfig(
            timesteps=d["timesteps"],
            linear_start=d["linear_start"],
            linear_end=d["linear_end"],
            zero_terminal_snr=d["rescale_betas_zero_snr"],
            prediction=d["parameterization"],
            dynamic_rescale=d.get("use_dynamic_rescale", False),
            base_scale=d.get("base_scale", 1.0),
            turning_step=d.get("turning_step", 400),
        )

    def networks(self) -> tuple[DynamiCrafterUNet, Resampler]:
        ckpt = self.checkpoint()
        unet = DynamiCrafterUNet(ckpt.unet_config).eval()
        unet.load_state_dict(ckpt.require("unet"), strict=True)
        resampler = Resampler(ckpt.resampler_config).eval()
        resampler.load_state_dict(ckpt.require("resampler"), strict=True)
        return unet, resampler


def fixture_sets(folder: Path) -> list[FixtureSet]:
    """Every fixture set (a sub-folder with a ``config.json``) in ``folder``; none when it does not exist."""
    if not folder.is_dir():
        return []
    return [FixtureSet(p) for p in sorted(folder.iterdir()) if (p / "config.json").is_file()]
