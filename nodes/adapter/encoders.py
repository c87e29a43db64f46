"""The host's text encoder and CLIP vision built from a DynamiCrafter checkpoint's parts, and image tokens.

DynamiCrafter's text encoder is OpenCLIP ViT-H/14's text tower at the "penultimate" layer (23 of 24 blocks,
then the final layer norm): exactly the host's SD 2.x CLIP (``comfy.text_encoders.sd2_clip``). Its image
encoder is OpenCLIP ViT-H/14's vision tower returning all 257 tokens of the last block before the post
layer norm: the host's CLIP vision ``last_hidden_state``. Both are built here with the host's own key
conversions, so the host's model management (devices, offload, dtypes) applies to them.

The one difference from the host's stock path is the image preprocessing: the original squashes the frame
to 224x224 with kornia's bicubic resize (``align_corners=True``, antialias) from [-1, 1] and neither
center-crops nor rounds to 8 bits, which :func:`image_tokens` reproduces.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path

import comfy.clip_vision
import comfy.model_management
import comfy.sd
import comfy.supported_models
import comfy.supported_models_base
import comfy.text_encoders.sd2_clip
import comfy.utils
import kornia
import torch

from ...dynamicrafter.checkpoint import PART_PREFIXES

log = logging.getLogger(__name__)

TEXT_PART_PREFIX = PART_PREFIXES["text_encoder"]
"""The text encoder part's prefix in an original checkpoint (its keys start with ``model.``)."""

VISION_PREFIX = "model.visual."
"""Prefix of the vision tower's keys inside the checkpoint's ``embedder.`` part."""

CLIP_IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP normalisation, as ``FrozenOpenCLIPImageEmbedderV2`` uses it."""

IMAGE_TOKENS = 257
"""ViT-H/14 at 224 px: class token + 16x16 patches (each of width 1280)."""

HOST_VIT_H_CONFIG = "clip_vision_config_h.json"
"""The host's ViT-H/14 CLIP vision config file, beside ``comfy/clip_vision.py``."""


def _count_blocks(sd: dict[str, torch.Tensor], prefix: str) -> int:
    """How many OpenCLIP ``transformer.resblocks.N`` blocks the weights under ``prefix`` hold."""
    marker = prefix + "transformer.resblocks."
    return len({k[len(marker) :].split(".", 1)[0] for k in sd if k.startswith(marker)})


def text_tower_sizes(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """The OpenCLIP text tower's sizes, read from its weights (``model.*`` keys of the ``cond_stage_model.`` part).

    Named as the host's CLIP text config names them; for the released files they equal the host's SD 2.x
    config (ViT-H/14: width 1024, 24 blocks). The head count is not in the weights: it stays the config's.
    """
    width = sd["model.token_embedding.weight"].shape[1]
    return {
        "hidden_size": width,
        "vocab_size": sd["model.token_embedding.weight"].shape[0],
        "num_hidden_layers": _count_blocks(sd, "model."),
        "intermediate_size": sd["model.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "max_position_embeddings": sd["model.positional_embedding"].shape[0],
        "projection_dim": sd["model.text_projection"].shape[1],
    }


def text_encoder_from_state_dict(
    sd: dict[str, torch.Tensor], model_options: dict | None = None, embedding_directory: str | list[str] | None = None
) -> comfy.sd.CLIP:
    """The host's SD 2.x OpenCLIP-H text encoder ("penultimate" layer) from the ``cond_stage_model.`` part.

    ``sd``: the part's tensors without that prefix (``model.transformer.resblocks.N...``,
    ``model.token_embedding.weight``, ...), in OpenCLIP layout; converted to the host's layout by the
    host's SD 2.x rules. The tower's sizes come from the weights (:func:`text_tower_sizes`, given to the
    host's config through its ``clip_h_model_config`` option). ``model_options`` go to ``comfy.sd.CLIP``
    (e.g. ``{"dtype": torch.float32}``; by default the host picks the text-encoder device and dtype).
    ``sd`` is not modified.
    """
    if not any(k.startswith("model.transformer.resblocks.") for k in sd):
        raise ValueError(
            "not an OpenCLIP text encoder: expected keys 'model.transformer.resblocks.N...' "
            f"(the checkpoint's cond_stage_model part), got e.g. {next(iter(sd), None)!r}"
        )
    try:
        sizes = text_tower_sizes(sd)
    except KeyError as missing:
        raise ValueError(f"the text encoder weights are incomplete: no {missing.args[0]!r}") from None
    prefixed = {TEXT_PART_PREFIX + k: v for k, v in sd.items()}
    clip_sd = comfy.supported_models.SD20({}).process_clip_state_dict(prefixed)
    target = comfy.supported_models_base.ClipTarget(
        comfy.text_encoders.sd2_clip.SD2Tokenizer, comfy.text_encoders.sd2_clip.SD2ClipModel
    )
    options = {**(model_options or {}), "clip_h_model_config": sizes}
    clip = comfy.sd.CLIP(
        target,
        embedding_directory=embedding_directory,
        tokenizer_data=clip_sd,
        parameters=comfy.utils.calculate_parameters(clip_sd),
        model_options=options,
    )
    missing, unexpected = clip.load_sd(clip_sd, full_model=True)
    needed = [k for k in missing if ".text_model." in k]
    if needed:
        raise ValueError(f"the text encoder weights are incomplete: {len(needed)} missing, e.g. {needed[0]!r}")
    if missing:
        log.info("text encoder: parameters not in the checkpoint (unused for conditioning): %s", missing)
    if unexpected:
        log.warning("text encoder: ignored %d unexpected keys, e.g. %r", len(unexpected), unexpected[0])
    return clip


def vision_tower_config(visual: dict[str, torch.Tensor]) -> dict:
    """The host's CLIP vision config (its ViT-H/14 file) with the sizes the OpenCLIP vision weights have.

    ``visual``: keys ``model.visual.*``. For the released files the result equals the host's own
    ``clip_vision_config_h.json``; the head count is not in the weights and stays that file's.
    """
    host_file = Path(comfy.clip_vision.__file__).with_name(HOST_VIT_H_CONFIG)
    config = json.loads(host_file.read_text(encoding="utf-8"))
    width, _, patch, _ = visual[VISION_PREFIX + "conv1.weight"].shape
    grid = math.isqrt(visual[VISION_PREFIX + "positional_embedding"].shape[0] - 1)
    config.update(
        hidden_size=width,
        patch_size=patch,
        image_size=grid * patch,
        num_hidden_layers=_count_blocks(visual, VISION_PREFIX),
        intermediate_size=visual[VISION_PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        projection_dim=visual[VISION_PREFIX + "proj"].shape[1],
    )
    return config


def clip_vision_from_state_dict(sd: dict[str, torch.Tensor]) -> comfy.clip_vision.ClipVisionModel:
    """The host's CLIP vision (ViT-H/14) from the checkpoint's ``embedder.`` part (keys ``model.visual.*``).

    The part's text-side leftovers (``model.token_embedding.weight``, ``model.ln_final.*``, ...) are
    ignored. The config is the host's ViT-H/14 one with the sizes the weights have
    (:func:`vision_tower_config`); the host picks device and dtype (its text-encoder settings).
    ``sd`` is not modified.
    """
    visual = {k: v for k, v in sd.items() if k.startswith(VISION_PREFIX)}
    if f"{VISION_PREFIX}transformer.resblocks.0.attn.in_proj_weight" not in visual:
        raise ValueError(
            "not an OpenCLIP vision tower: expected keys 'model.visual.transformer.resblocks.N...' "
            f"(the checkpoint's embedder part), got e.g. {next(iter(sd), None)!r}"
        )
    try:
        config = vision_tower_config(visual)
    except KeyError as missing:
        raise ValueError(f"the CLIP vision weights are incomplete: no {missing.args[0]!r}") from None
    with tempfile.TemporaryDirectory(prefix="dynamicrafter-clip-vision-") as folder:
        config_file = Path(folder) / HOST_VIT_H_CONFIG
        config_file.write_text(json.dumps(config), encoding="utf-8")
        clip_vision = comfy.clip_vision.ClipVisionModel(str(config_file))
    missing, _ = clip_vision.load_sd(comfy.clip_vision.convert_to_transformers(visual, VISION_PREFIX))
    if missing:
        raise ValueError(f"the CLIP vision weights are incomplete: {len(missing)} missing, e.g. {missing[0]!r}")
    _check_tokens(clip_vision)
    return clip_vision


def _check_tokens(clip_vision: comfy.clip_vision.ClipVisionModel) -> None:
    """Raise a clear error unless ``clip_vision`` is an OpenCLIP ViT-/14 at 224 px giving 257 tokens.

    The token width must also be what the model's Resampler reads (1280 for every released file, ViT-H);
    the model checks that when it meets the tokens.
    """
    try:
        shape = tuple(clip_vision.model.vision_model.embeddings.position_embedding.weight.shape)
    except AttributeError:
        shape = None
    if shape is None or shape[0] != IMAGE_TOKENS:
        raise ValueError(
            "DynamiCrafter needs the OpenCLIP ViT-H/14 CLIP vision model "
            "(e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors, 257 tokens of width 1280); "
            f"this CLIP vision model has position embeddings of shape {shape}"
        )


def clip_pixel_values(image: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """``FrozenOpenCLIPImageEmbedderV2.preprocess``: IMAGE [B, H, W, C] in 0..1 -> [B, 3, 224, 224], float32.

    [-1, 1], kornia bicubic resize to 224x224 (aspect ratio not kept, ``align_corners=True``, antialias),
    back to 0..1, CLIP mean/std. No center crop, no 8-bit rounding. Extra channels (alpha) are dropped.
    """
    if image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"expected an IMAGE batch [B, H, W, 3], got shape {tuple(image.shape)}")
    x = image[..., :3].to(device=device, dtype=torch.float32).movedim(-1, 1)
    x = x * 2.0 - 1.0
    x = kornia.geometry.resize(
        x, (CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE), interpolation="bicubic", align_corners=True, antialias=True
    )
    x = (x + 1.0) / 2.0
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype)
    return kornia.enhance.normalize(x, mean, std)


def image_tokens(clip_vision: comfy.clip_vision.ClipVisionModel, image: torch.Tensor) -> torch.Tensor:
    """All 257 CLIP-vision tokens of the last block (before the post layer norm): [B, 257, 1280], float32.

    ``image``: ComfyUI IMAGE [B, H, W, 3] in 0..1, any size. Preprocessed as the original does
    (:func:`clip_pixel_values`) on the model's device; the host loads the model and casts its weights.
    Returned on the host's intermediate device.
    """
    _check_tokens(clip_vision)
    comfy.model_management.load_model_gpu(clip_vision.patcher)
    pixel_values = clip_pixel_values(image, device=clip_vision.load_device)
    with torch.no_grad():
        out = clip_vision.model(pixel_values=pixel_values, intermediate_output=None)
    tokens = out[0].float()
    log.debug("image tokens %s from image %s", tuple(tokens.shape), tuple(image.shape))
    return tokens.to(comfy.model_management.intermediate_device())


def unconditional_image(height: int, width: int, batch_size: int = 1) -> torch.Tensor:
    """The negative side's image: all zeros in [-1, 1], i.e. uniform mid-gray 0.5 as an IMAGE [B, H, W, 3]."""
    if height < 1 or width < 1 or batch_size < 1:
        raise ValueError(f"image size must be positive, got {batch_size}x{height}x{width}")
    return torch.full(
        (batch_size, height, width, 3), 0.5, dtype=torch.float32, device=comfy.model_management.intermediate_device()
    )
