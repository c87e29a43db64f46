"""The LoRA training loop on the host: the pack's objective through ``DynamiCrafterNet``, the host's adapters.

Each step draws whole videos (never frames of different videos: a video's frames stay together in the
``[(B T), C, h, w]`` layout the network unfolds), the objective's random numbers from one seeded generator,
and runs AdamW on the adapters only, with the gradient norm clipped at 0.5 as the original's trainer does. The
frozen weights keep the host's dtype; ``training_dtype`` bf16/fp16 runs the step under autocast. Cancel
(the host's interrupt) stops after the current step: the caller keeps the adapters trained so far.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import comfy.model_management as mm
import comfy.utils
import torch

from ...dynamicrafter.frames import fold_frames, unfold_frames
from ...dynamicrafter.training.objective import ObjectiveSettings, Predictor, draw, training_loss, variant_schedule
from .dataset import TrainingClips

log = logging.getLogger(__name__)

GRAD_CLIP = 0.5
"""``trainer.gradient_clip_val`` of the original's training configs."""
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def progress_text(node_id: str | None, steps: int) -> Callable[[int, float], None]:
    """Shows the step and the running loss (mean of the last 10 steps) under the node, as the host's progress
    text, and logs it every tenth of the run."""
    every, recent = max(1, steps // 10), collections.deque(maxlen=10)

    def report(step: int, loss: float) -> None:
        recent.append(loss)
        text = f"step {step}/{steps}  loss {loss:.4f}  (last {len(recent)}: {sum(recent) / len(recent):.4f})"
        if step % every == 0 or step == steps:
            log.info("DynamiCrafter training: %s", text)
        server = getattr(importlib.import_module("server").PromptServer, "instance", None)
        if server is not None and node_id is not None:
            server.send_progress_text(text, node_id)

    return report


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    cancelled: bool = False


def host_predictor(model) -> Predictor:
    """The objective's predictor over the host model's ``DynamiCrafterNet`` (frames folded into the batch)."""
    net = model.diffusion_model
    dtype = model.manual_cast_dtype or model.get_dtype()

    def predict(x, timesteps, concat, text, clip_tokens, fs):
        frames = x.shape[2]
        per_frame = lambda v: v.repeat_interleave(frames, dim=0)  # noqa: E731
        net.forget_image_tokens()  # the Resampler trains: never reuse its output
        out = net(
            fold_frames(torch.cat([x, concat], dim=1)).to(dtype),
            per_frame(timesteps).float(),
            context=per_frame(text).to(dtype),
            transformer_options={},
            dynamicrafter_frames=frames,
            dynamicrafter_clip_vision_tokens=per_frame(clip_tokens).to(dtype),
            dynamicrafter_fs=per_frame(fs),
        )
        return unfold_frames(out, frames)

    return predict


def checkpointed_blocks(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The UNet's blocks (input, middle, output), each recomputed in the backward pass when checkpointing."""
    return [*net.input_blocks, net.middle_block, *net.output_blocks]


@contextlib.contextmanager
def gradient_checkpointing(blocks: list[torch.nn.Module], enabled: bool):
    """The host's checkpoint patch (``comfy_extras.nodes_train.patch``) on each block while training."""
    if not enabled:
        yield
        return
    from comfy_extras.nodes_train import patch, unpatch

    for block in blocks:
        patch(block)
    try:
        yield
    finally:
        for block in blocks:
            unpatch(block)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(
    model,
    clips: TrainingClips,
    params: list[torch.Tensor],
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    training_dtype: str = "fp32",
    checkpointing: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Run ``steps`` optimiser steps of the variant's objective; stops early (``cancelled``) on Cancel."""
    from ...dynamicrafter.config import VARIANTS

    variant = VARIANTS[clips.variant]
    settings = ObjectiveSettings.for_variant(variant)
    schedule = variant_schedule(variant)
    device = mm.get_torch_device()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    predict = host_predictor(model)
    scaler = torch.amp.GradScaler(device.type, enabled=training_dtype == "fp16")
    result = TrainResult()
    pbar = comfy.utils.ProgressBar(steps)
    batch_size = min(batch_size, len(clips))
    with gradient_checkpointing(checkpointed_blocks(model.diffusion_model), checkpointing):
        for step in range(steps):
            if mm.processing_interrupted():
                result.cancelled = True
                break
            order = torch.randperm(len(clips), generator=generator)[:batch_size].tolist()
            batch = clips.batch(order, model.process_latent_in, device)
            draws = draw(batch, settings, generator)
            with _autocast(device, AUTOCAST[training_dtype]):
                loss = training_loss(predict, batch, draws, settings, schedule)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at step {step + 1}: lower the learning rate")
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            result.losses.append(loss.item())
            pbar.update_absolute(step + 1, steps)
            if on_step is not None:
                on_step(step + 1, result.losses[-1])
    model.diffusion_model.forget_image_tokens()
    return result


@torch.no_grad()
def evaluate(model, clips: TrainingClips, draws_seed: int, rounds: int = 4) -> float:
    """Mean objective over ``rounds`` fixed draws of every clip (the same numbers before and after training)."""
    from ...dynamicrafter.config import VARIANTS

    variant = VARIANTS[clips.variant]
    settings, schedule = ObjectiveSettings.for_variant(variant), variant_schedule(variant)
    device, generator = mm.get_torch_device(), torch.Generator().manual_seed(draws_seed)
    predict, total = host_predictor(model), 0.0
    batch = clips.batch(list(range(len(clips))), model.process_latent_in, device)
    for _ in range(rounds):
        total += float(training_loss(predict, batch, draw(batch, settings, generator), settings, schedule))
    model.diffusion_model.forget_image_tokens()
    return total / rounds
