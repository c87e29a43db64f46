"""Build the host objects (MODEL patcher, VAE) from a split DynamiCrafter checkpoint."""

from __future__ import annotations

import functools
import logging
import os
import re

import comfy.model_management as mm
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sd
import comfy.utils
import torch

from ...dynamicrafter.checkpoint import CheckpointError, DynamiCrafterCheckpoint, load_checkpoint
from ...dynamicrafter.tooncrafter.config import is_dual_reference_vae
from .family import DynamiCrafterConfig
from .lora_keys import install_lora_key_map

log = logging.getLogger(__name__)

WEIGHT_DTYPES: dict[str, dict] = {
    "default": {},
    "fp32": {"dtype": torch.float32},
    "fp16": {"dtype": torch.float16},
    "bf16": {"dtype": torch.bfloat16},
    "fp8_e4m3fn": {"dtype": torch.float8_e4m3fn},
    "fp8_e4m3fn_fast": {"dtype": torch.float8_e4m3fn, "fp8_optimizations": True},
    "fp8_e5m2": {"dtype": torch.float8_e5m2},
}
"""Weight storage choices as the host's model_options (as its UNETLoader sets them); fp8 is stored
only and computed in the host's manual-cast dtype, ``_fast`` uses fp8 matrix multiplies where the GPU has them."""


def read_checkpoint(path: str | os.PathLike, variant: str | None = None) -> DynamiCrafterCheckpoint:
    """A DynamiCrafter file read through the host's file reader, so ``--disable-mmap`` is honoured."""
    reader = functools.partial(comfy.utils.load_torch_file, safe_load=True)
    return load_checkpoint(path, variant, safetensors_reader=reader, mmap=not comfy.utils.DISABLE_MMAP)


def model_from_checkpoint(
    ckpt: DynamiCrafterCheckpoint, weight_dtype: str = "default", model_options: dict | None = None
) -> comfy.model_patcher.ModelPatcher:
    """The UNet + Resampler as a host model, built the way ``comfy.sd.load_diffusion_model`` builds one.

    ``model_options`` are the host's: ``dtype``, ``custom_operations`` (the layer classes the UNet and
    Resampler are made of) and ``fp8_optimizations``; they win over ``weight_dtype``, the loader
    node's choice.
    """
    install_lora_key_map()
    options = {**WEIGHT_DTYPES[weight_dtype], **(model_options or {})}
    config = DynamiCrafterConfig(ckpt.variant, ckpt.unet_config, ckpt.resampler_config)
    state = dict(ckpt.require("unet"))
    state.update({f"image_proj_model.{k}": v for k, v in ckpt.require("resampler").items()})
    load_device = mm.get_torch_device()
    stored = comfy.utils.weight_dtype(state)
    dtype = options.get("dtype") or mm.unet_dtype(
        model_params=comfy.utils.calculate_parameters(state),
        supported_dtypes=config.supported_inference_dtypes,
        weight_dtype=stored,
    )
    manual_cast = mm.unet_manual_cast(dtype, load_device, config.supported_inference_dtypes)
    config.set_inference_dtype(dtype, manual_cast)
    if options.get("custom_operations") is not None:
        config.custom_operations = options["custom_operations"]
    if options.get("fp8_optimizations", False):
        config.optimizations["fp8"] = True
    offload_device = mm.unet_offload_device()
    model = config.get_model()
    patcher = new_patcher(model, load_device, offload_device)
    if not mm.is_device_cpu(offload_device):
        model.to(offload_device)
    missing, unexpected = model.diffusion_model.load_state_dict(state, strict=False, assign=is_dynamic(patcher))
    if missing or unexpected:
        raise CheckpointError(
            ckpt.path,
            f"the weights do not fit the network derived from their shapes "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the file may be damaged",
        )
    log.info("DynamiCrafter %s: weights %s, compute %s", ckpt.variant.name, dtype, manual_cast or dtype)
    patcher.add_callback(comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, _forget_image_tokens)
    return patcher


def new_patcher(
    model: torch.nn.Module, load_device: torch.device, offload_device: torch.device
) -> comfy.model_patcher.ModelPatcher:
    """The patcher class the host's own loaders use for a model (``CoreModelPatcher``, since 0.33.0).

    On an NVIDIA card with dynamic VRAM (0.33.0's default) ``main.py`` makes that ``ModelPatcherDynamic``, which
    streams weights as the host's core models do; elsewhere, and on 0.8.0, it is the plain ``ModelPatcher``.
    """
    patcher_class = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    return patcher_class(model, load_device=load_device, offload_device=offload_device)


def is_dynamic(patcher: comfy.model_patcher.ModelPatcher) -> bool:
    """Whether the patcher streams weights (dynamic VRAM): then the weights are assigned, not copied, on load."""
    return bool(getattr(patcher, "is_dynamic", lambda: False)())


def _forget_image_tokens(patcher: comfy.model_patcher.ModelPatcher) -> None:
    """At the start of every sampling run (clones keep this callback): the Resampler's weights may carry a LoRA."""
    patcher.model.diffusion_model.forget_image_tokens()


def _vae_config(sd: dict[str, torch.Tensor]) -> dict | None:
    """AutoencoderKL params read from the shapes, as the UNet's are (None for SD's own width, which the host
    detects itself): a narrower VAE, such as the demo checkpoint's, then loads through the host's VAE class."""
    ch = sd["encoder.conv_in.weight"].shape[0]
    if ch == 128:
        return None  # the standard SD VAE: let the host detect it
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    ch_mult = [sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels]
    ddconfig = {
        "double_z": True,
        "z_channels": sd["decoder.conv_in.weight"].shape[1],
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": ch,
        "ch_mult": ch_mult,
        "num_res_blocks": len(blocks),
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    return {"params": {"ddconfig": ddconfig, "embed_dim": sd["quant_conv.weight"].shape[0] // 2}}


def vae_from_checkpoint(ckpt: DynamiCrafterCheckpoint) -> comfy.sd.VAE:
    """The SD KL-f8 VAE of the checkpoint, as the host's VAE (decodes frames in memory-sized chunks)."""
    sd = dict(ckpt.require("vae"))
    if is_dual_reference_vae(sd):
        raise CheckpointError(
            ckpt.path,
            "this is a ToonCrafter checkpoint (dual-reference VAE); load it with 'DynamiCrafter Load ToonCrafter'",
        )
    try:
        return comfy.sd.VAE(sd=sd, config=_vae_config(sd))
    except KeyError as e:
        raise CheckpointError(ckpt.path, f"the VAE weights are incomplete (missing {e.args[0]!r})") from None
