"""Which layers of the network get LoRA adapters.

``attention``: the query/key/value/output projections of every spatial and temporal attention (the image
cross-attention's ``to_k_ip`` / ``to_v_ip`` included); ``conv``: the UNet's convolutions (ResBlocks, temporal
convs, in/out, resampling); ``resampler``: the Resampler's linear layers (the original trains the image
projector too, ``image_proj_model_trainable``).
"""

from __future__ import annotations

import re

import torch

TARGET_CHOICES = ("attention", "attention+resampler", "attention+conv", "attention+conv+resampler")
RESAMPLER_PREFIX = "image_proj_model."
_ATTENTION = re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_k_ip|to_v_ip|to_out\.0)$")


def parts(choice: str) -> set[str]:
    """The named parts of a ``TARGET_CHOICES`` entry."""
    if choice not in TARGET_CHOICES:
        raise ValueError(f"unknown adapter targets {choice!r}; choose one of {', '.join(TARGET_CHOICES)}")
    return set(choice.split("+"))


def is_target(name: str, module: torch.nn.Module, chosen: set[str]) -> bool:
    """Whether the layer ``name`` (relative to the UNet, the Resampler under ``image_proj_model.``) is adapted."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return False
    if name.startswith(RESAMPLER_PREFIX):
        return "resampler" in chosen and isinstance(module, torch.nn.Linear)
    if isinstance(module, torch.nn.Linear):
        return "attention" in chosen and bool(_ATTENTION.search(name))
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        return "conv" in chosen
    return False


def target_modules(network: torch.nn.Module, chosen: set[str]) -> list[tuple[str, torch.nn.Module]]:
    """``(name, module)`` of every adapted layer of ``network``, in module order."""
    return [(name, m) for name, m in network.named_modules() if is_target(name, m, chosen)]
