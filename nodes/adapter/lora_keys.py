"""LoRA key names for DynamiCrafter, so the stock LoraLoader nodes find the UNet and Resampler layers.

The host maps ``diffusion_model.<name>`` and kohya-style ``lora_unet_<name_with_underscores>`` on its
own (``comfy.lora.model_lora_keys_unet``), where ``<name>`` is a module of ``DynamiCrafterNet``: the
original UNet names and ``image_proj_model.*`` for the Resampler. It has no hook for a model's own
names, so its key-map function is wrapped once to add the names of the original checkpoint:
``model.diffusion_model.<unet name>`` and ``image_proj_model.<resampler name>``. Other models are
left untouched.
"""

from __future__ import annotations

import functools

import comfy.lora

from ...dynamicrafter.checkpoint import PART_PREFIXES
from .family import DynamiCrafterModel

HOST_PREFIX = "diffusion_model."
CHECKPOINT_UNET_PREFIX = PART_PREFIXES["unet"]
RESAMPLER = PART_PREFIXES["resampler"]


def checkpoint_lora_keys(model: DynamiCrafterModel) -> dict[str, str]:
    """LoRA name (without ``.lora_up.weight`` etc.) -> model weight key, for the checkpoint's names."""
    key_map = {}
    for key in model.state_dict():
        if not key.startswith(HOST_PREFIX):
            continue
        name = key[len(HOST_PREFIX) :]
        original = name if name.startswith(RESAMPLER) else CHECKPOINT_UNET_PREFIX + name
        key_map[original.removesuffix(".weight") if name.endswith(".weight") else original] = key
    return key_map


def install_lora_key_map() -> None:
    """Wrap ``comfy.lora.model_lora_keys_unet`` (once) so DynamiCrafter models get the checkpoint's names too."""
    host_function = comfy.lora.model_lora_keys_unet
    if getattr(host_function, "dynamicrafter_wrapped", False):
        return

    @functools.wraps(host_function)
    def model_lora_keys_unet(model, key_map=None):
        key_map = host_function(model, {} if key_map is None else key_map)
        if isinstance(model, DynamiCrafterModel):
            for name, key in checkpoint_lora_keys(model).items():
                key_map.setdefault(name, key)
        return key_map

    model_lora_keys_unet.dynamicrafter_wrapped = True
    comfy.lora.model_lora_keys_unet = model_lora_keys_unet
