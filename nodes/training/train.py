"""The pack's Train LoRA node: the host's Train LoRA, keeping each video's frames together.

The host's ``TrainLoraNode`` draws single latents from the batch, and a DynamiCrafter latent batch holds a
video's frames (``[(B T), C, h, w]``), so it would mix frames of different videos and has no image latent,
CLIP tokens or fs. This node shares the rest with it: the host's LoRA training modules and weight wrappers, the
``LORA_MODEL`` / ``LOSS_MAP`` outputs that stock Save LoRA, Load LoRA Model and Plot Loss Graph take, the
progress bar, Cancel. It also writes the LoRA into the loras folder (Save LoRA's naming), after the last step
or on Cancel, so that a cancelled run keeps its adapters and a later run can resume from the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.latest import io

from ...dynamicrafter.training.targets import TARGET_CHOICES, parts
from ..adapter.inputs import CATEGORY, SEED_MAX
from ..adapter.validation import CheckedNode, InputError
from . import adapters
from .dataset import CLIPS_TYPE
from .loop import AUTOCAST, progress_text, train

log = logging.getLogger(__name__)

LORA_MODEL = io.Custom("LORA_MODEL")
LOSS_MAP = io.Custom("LOSS_MAP")
MAX_RANK = 256


def name_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot name a file inside the loras folder, or None."""
    if not prefix or not prefix.strip():
        return "lora_name is empty: give the LoRA a name, e.g. dynamicrafter/my_motion"
    parts_ = prefix.replace("\\", "/").split("/")
    if prefix.startswith(("/", "\\")) or ":" in prefix or ".." in parts_ or any(p in ("", ".") for p in parts_[:-1]):
        return f"lora_name {prefix!r} must be a plain name inside the loras folder (no '..', no absolute path)"
    return None


def _clone(model):
    """A clone of the patcher whose loads apply the adapters; a dynamic-VRAM patcher (0.33+) gives way to a plain
    one where the host can rebuild it. The adapters live in the clone's weight wrappers only: the next load of
    the original patcher resets the layers."""
    rebuildable = getattr(model, "cached_patcher_init", None) is not None
    if rebuildable and getattr(model, "is_dynamic", lambda: False)():
        return model.clone(disable_dynamic=True)
    return model.clone()


class DynamiCrafterTrainLoRA(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterTrainLoRA",
            display_name="DynamiCrafter Train LoRA",
            category=f"{CATEGORY}/training",
            description="Fine-tunes a LoRA on training clips with the original DynamiCrafter training objective.",
            is_experimental=True,
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter model to train on (from the loader)."),
                CLIPS_TYPE.Input("clips", tooltip="Encoded clips from 'DynamiCrafter Training Clips'."),
                io.Int.Input("steps", default=200, min=1, max=100000, tooltip="Optimiser steps to run."),
                io.Float.Input(
                    "learning_rate",
                    default=1e-4,
                    min=1e-7,
                    max=1.0,
                    step=1e-6,
                    tooltip="AdamW learning rate (the original fine-tunes the full model at 1e-5).",
                ),
                io.Int.Input("rank", default=16, min=1, max=MAX_RANK, tooltip="LoRA rank."),
                io.Float.Input("alpha", default=16.0, min=0.01, max=4096.0, tooltip="LoRA alpha (scale alpha / rank)."),
                io.Int.Input("batch_size", default=1, min=1, max=16, tooltip="Whole videos (clips) per step."),
                io.Combo.Input(
                    "targets",
                    options=list(TARGET_CHOICES),
                    default="attention+resampler",
                    tooltip="Layers that get adapters: the UNet's attention, its convolutions, the "
                    "Resampler (the original trains the image projector too).",
                ),
                io.Boolean.Input(
                    "gradient_checkpointing",
                    default=True,
                    tooltip="Recompute each UNet block in the backward pass: far less memory, ~30% slower.",
                ),
                io.Combo.Input(
                    "training_dtype",
                    options=list(AUTOCAST),
                    default="bf16",
                    tooltip="Autocast precision of the step; the LoRA itself stays fp32.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=SEED_MAX,
                    tooltip="Seed of the LoRA initialisation and the training draws.",
                ),
                io.Combo.Input(
                    "existing_lora",
                    options=folder_paths.get_filename_list("loras") + [adapters.NO_LORA],
                    default=adapters.NO_LORA,
                    tooltip="A LoRA from the loras folder to resume.",
                ),
                io.String.Input(
                    "lora_name",
                    default="dynamicrafter/trained_lora",
                    tooltip="Name of the file written to the loras folder after training or on Cancel.",
                ),
            ],
            hidden=[io.Hidden.unique_id],
            outputs=[
                LORA_MODEL.Output(display_name="lora", tooltip="The trained LoRA (for Save LoRA / Load LoRA Model)."),
                LOSS_MAP.Output(display_name="loss_map", tooltip="Loss per step (for Plot Loss Graph)."),
                io.Int.Output(display_name="steps", tooltip="Total steps, resumed ones included."),
            ],
        )

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        """The LoRA name (NaN and out-of-range numbers are refused by ``CheckedNode`` itself)."""
        prefix = values.get("lora_name")
        return name_problem(prefix) if isinstance(prefix, str) else None

    @classmethod
    def execute(
        cls,
        model,
        clips,
        steps,
        learning_rate,
        rank,
        alpha,
        batch_size,
        targets,
        gradient_checkpointing,
        training_dtype,
        seed,
        existing_lora,
        lora_name,
    ) -> io.NodeOutput:
        if clips is None or len(clips) == 0:
            raise InputError("no training clips: connect 'DynamiCrafter Training Clips'")
        existing, done = adapters.load_existing(existing_lora)
        with torch.inference_mode(False):
            patcher = _clone(model)
            if training_dtype != "fp32":
                patcher.set_model_compute_dtype(AUTOCAST[training_dtype])
            patcher.model.requires_grad_(False)
            generator = torch.Generator().manual_seed(seed)
            params = adapters.create_adapters(patcher, parts(targets), rank, alpha, existing, generator)
            mm.load_models_gpu([patcher], memory_required=1e20, force_full_load=True)
            mm_flag = hasattr(mm, "in_training")
            if mm_flag:
                mm.in_training = True
            try:
                result = train(
                    patcher.model,
                    clips,
                    adapters.trainable(params),
                    steps,
                    learning_rate,
                    batch_size,
                    seed,
                    training_dtype,
                    gradient_checkpointing,
                    on_step=progress_text(cls.hidden.unique_id if cls.hidden else None, steps),
                )
            finally:
                if mm_flag:
                    mm.in_training = False
            lora = adapters.lora_state(params)
            total = done + len(result.losses)
            saved = adapters.save_to_loras(lora, lora_name, total)
            patcher.model.requires_grad_(False)
        if result.cancelled:
            log.info(
                "DynamiCrafter training cancelled after %d steps; the LoRA so far is %s", len(result.losses), saved
            )
            mm.throw_exception_if_processing_interrupted()
        return io.NodeOutput(lora, {"loss": result.losses}, total)
