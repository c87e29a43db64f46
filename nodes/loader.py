"""Loader nodes: one DynamiCrafter file in, the host's MODEL / CLIP / VAE / CLIP_VISION out."""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..dynamicrafter.checkpoint import WHERE_TO_GET, DynamiCrafterCheckpoint, MissingPartError
from ..dynamicrafter.config import VARIANTS
from .adapter.encoders import clip_vision_from_state_dict, text_encoder_from_state_dict
from .adapter.inputs import CATEGORY
from .adapter.patcher import WEIGHT_DTYPES, model_from_checkpoint, read_checkpoint, vae_from_checkpoint
from .adapter.validation import CheckedNode

VARIANT_CHOICES = ["auto", *VARIANTS]
PRUNED_FILE_ADVICE = (
    "It looks like a pruned file (UNet, VAE and Resampler only): load it with 'DynamiCrafter Load "
    f"Model', and get the text encoder with {WHERE_TO_GET['text_encoder']}, and the image encoder "
    f"with {WHERE_TO_GET['clip_vision']}."
)
MODEL_FOLDERS = ("checkpoints", "diffusion_models")

_VARIANT_TOOLTIP = (
    "Which DynamiCrafter this file is. 'auto' reads it from the weights (256 vs the rest) and the file "
    "name / stored schedule (512, 1024, 512_interp); set it when a renamed file is detected wrongly."
)
_DTYPE_TOOLTIP = (
    "How the UNet weights are stored in memory. 'default' lets ComfyUI pick (bf16/fp16 on most GPUs, "
    "fp32 on CPU). fp8 halves the memory again and computes in bf16/fp16; fp8_e4m3fn_fast also "
    "multiplies in fp8 on GPUs that support it (RTX 40xx, H100 and newer)."
)


def _files(folders: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for folder in folders:
        names.extend(n for n in folder_paths.get_filename_list(folder) if n not in names)
    return sorted(names)


def _full_path(name: str, folders: tuple[str, ...]) -> str:
    for folder in folders:
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    raise FileNotFoundError(f"{name} was not found in the {' or '.join(folders)} model folders")


def _read(name: str, folders: tuple[str, ...], variant: str) -> DynamiCrafterCheckpoint:
    return read_checkpoint(_full_path(name, folders), variant)


class DynamiCrafterCheckpointLoader(CheckedNode):
    """The whole original checkpoint (or Kijai's bf16 full file): model, text encoder, VAE, CLIP vision."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterCheckpointLoader",
            display_name="DynamiCrafter Load Checkpoint",
            category=f"{CATEGORY}/loaders",
            description="Loads a full DynamiCrafter checkpoint (original model.ckpt or *_v1_bf16.safetensors). For the "
            "*_fp16_pruned files use 'DynamiCrafter Load Model' with the stock CLIP loaders.",
            inputs=[
                io.Combo.Input(
                    "ckpt_name",
                    options=_files(("checkpoints",)),
                    tooltip="A full DynamiCrafter file from models/checkpoints: the original model.ckpt "
                    f"(renamed e.g. {VARIANTS['512'].file_name}) or Kijai's *_v1_bf16.safetensors. "
                    "Pruned files lack CLIP: use 'DynamiCrafter Load Model' for them.",
                ),
                io.Combo.Input("variant", options=VARIANT_CHOICES, default="auto", tooltip=_VARIANT_TOOLTIP),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default", tooltip=_DTYPE_TOOLTIP),
            ],
            outputs=[
                io.Model.Output(tooltip="The DynamiCrafter UNet and image-token Resampler."),
                io.Clip.Output(tooltip="The OpenCLIP ViT-H/14 text encoder (as SD 2.x's)."),
                io.Vae.Output(tooltip="The SD KL-f8 VAE."),
                io.ClipVision.Output(tooltip="The OpenCLIP ViT-H/14 vision tower for the image tokens."),
            ],
        )

    @classmethod
    def execute(cls, ckpt_name: str, variant: str, weight_dtype: str) -> io.NodeOutput:
        ckpt = _read(ckpt_name, ("checkpoints",), variant)
        if not (ckpt.has("text_encoder") and ckpt.has("clip_vision")):
            raise MissingPartError(
                ckpt.path, "text_encoder" if not ckpt.has("text_encoder") else "clip_vision", PRUNED_FILE_ADVICE
            )
        text_sd, vision_sd = ckpt.require("text_encoder"), ckpt.require("clip_vision")
        return io.NodeOutput(
            model_from_checkpoint(ckpt, weight_dtype),
            text_encoder_from_state_dict(text_sd),
            vae_from_checkpoint(ckpt),
            clip_vision_from_state_dict(vision_sd),
        )


class DynamiCrafterLoadModel(CheckedNode):
    """UNet + Resampler (+ VAE) from any DynamiCrafter file, including the fp16-pruned ones."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterLoadModel",
            display_name="DynamiCrafter Load Model",
            category=f"{CATEGORY}/loaders",
            description="Loads the DynamiCrafter model (and its VAE) from any DynamiCrafter file, including Kijai's "
            "*_fp16_pruned.safetensors. Get the text encoder with the stock 'Load CLIP' (type "
            "stable_diffusion, an SD 2.x / OpenCLIP ViT-H text encoder) and the image encoder with "
            "'Load CLIP Vision' (CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors).",
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=_files(MODEL_FOLDERS),
                    tooltip="Any DynamiCrafter file in models/checkpoints or models/diffusion_models "
                    "(original .ckpt, *_v1_bf16 or *_fp16_pruned .safetensors).",
                ),
                io.Combo.Input("variant", options=VARIANT_CHOICES, default="auto", tooltip=_VARIANT_TOOLTIP),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default", tooltip=_DTYPE_TOOLTIP),
            ],
            outputs=[
                io.Model.Output(tooltip="The DynamiCrafter UNet and image-token Resampler."),
                io.Vae.Output(tooltip="The SD KL-f8 VAE stored in the file."),
            ],
        )

    @classmethod
    def execute(cls, model_name: str, variant: str, weight_dtype: str) -> io.NodeOutput:
        ckpt = _read(model_name, MODEL_FOLDERS, variant)
        return io.NodeOutput(model_from_checkpoint(ckpt, weight_dtype), vae_from_checkpoint(ckpt))


NODES = [DynamiCrafterCheckpointLoader, DynamiCrafterLoadModel]
