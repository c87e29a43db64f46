"""The training nodes on a tiny DynamiCrafter 512 model: calling them, and a short clip with a clear motion."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from support.host_checkpoints import write_host_checkpoint
from support.reference_data import manifest_path

WIDTH, HEIGHT = 128, 64
CAPTION = "a red ball rolling to the right"


@dataclass
class TrainingHost:
    host: Any
    model: Any
    clip: Any
    vae: Any
    clip_vision: Any
    loras: Path

    def pack(self, name: str):
        return self.host.import_pack_module(name)

    def clips(self, frames: torch.Tensor, captions: str = CAPTION, **kw: Any):
        node = self.pack("nodes.training").DynamiCrafterTrainingClips
        args = dict(
            variant="512",
            fps=24.0,
            frame_stride=1,
            frames_per_video=0,
            max_clips_per_video=1,
            width=WIDTH,
            height=HEIGHT,
            fit="crop",
        )
        args.update(kw)
        out = node.execute(self.vae, self.clip, self.clip_vision, frames, captions, **args)
        return out.result[0]

    def train(self, clips, **kw: Any):
        node = self.pack("nodes.training").DynamiCrafterTrainLoRA
        args = dict(
            steps=20,
            learning_rate=2e-3,
            rank=8,
            alpha=8.0,
            batch_size=1,
            targets="attention+conv+resampler",
            gradient_checkpointing=False,
            training_dtype="fp32",
            seed=3,
            existing_lora="[None]",
            lora_name="dynamicrafter/test_lora",
        )
        args.update(kw)
        return node.execute(self.model, clips, **args).result

    def with_lora(self, lora: dict, strength: float = 1.0):
        """The model with ``lora`` through the stock Load LoRA Model node."""
        loader = importlib.import_module("comfy_extras.nodes_train").LoraModelLoader
        return loader.execute(self.model, lora, strength).result[0]


def moving_ball(frames: int = 24, seed: int = 0) -> torch.Tensor:
    """IMAGE frames [N, 64, 128, 3]: a red disc moving right over a blue gradient (a clear motion to learn)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, HEIGHT), torch.linspace(0, 1, WIDTH), indexing="ij")
    out = []
    for i in range(frames):
        cx, cy = 0.15 + 0.7 * i / max(frames - 1, 1), 0.5 + 0.1 * math.sin(i / 3 + seed)
        disc = (((x - cx) * 2) ** 2 + (y - cy) ** 2 < 0.04).float()
        image = torch.stack([disc, 0.2 * x, 1 - disc * 0.8 - 0.5 * y], dim=-1)
        out.append(image.clamp(0, 1))
    return torch.stack(out)


TINY_FILE = "dynamicrafter_512_tiny_train.ckpt"


def provision(comfy_host, tmp_path_factory) -> TrainingHost:
    """A tiny 512 checkpoint (original layout, every encoder) loaded through the pack's loader; a loras folder."""
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("training-models")
    write_host_checkpoint(folder / TINY_FILE, "512", manifest_path("512"), "ckpt")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    loras = tmp_path_factory.mktemp("training-loras")
    comfy_host.folder_paths.add_model_folder_path("loras", str(loras), is_default=True)
    loader = comfy_host.import_pack_module("nodes.loader").DynamiCrafterCheckpointLoader
    model, clip, vae, clip_vision = loader.execute(TINY_FILE, "512", "fp32").result
    return TrainingHost(comfy_host, model, clip, vae, clip_vision, loras)
