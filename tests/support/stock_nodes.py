"""Calling the host's stock nodes directly (V1 and V3 classes alike) and sampling with its KSampler."""

from __future__ import annotations

import importlib

import torch


def stock_node(module: str, name: str) -> type:
    """A node class of the host, e.g. ``stock_node("comfy_extras.nodes_freelunch", "FreeU_V2")``."""
    return getattr(importlib.import_module(module), name)


def call_node(node_class: type, **inputs) -> tuple:
    """A node's outputs: V3 nodes through ``execute``, V1 nodes through their FUNCTION (the 0.3.64 and 0.8.0 mix)."""
    if hasattr(node_class, "define_schema"):
        return tuple(node_class.execute(**inputs).result)
    return tuple(getattr(node_class(), node_class.FUNCTION)(**inputs))


def ksample(
    nodes_module,
    model,
    positive,
    negative,
    latent: dict,
    seed: int = 1,
    steps: int = 2,
    cfg: float = 5.0,
    disable_noise: bool = False,
) -> torch.Tensor:
    """The stock KSampler's latent (euler, normal schedule); ``disable_noise`` starts from the latent itself."""
    with torch.no_grad():
        return nodes_module.common_ksampler(
            model, seed, steps, cfg, "euler", "normal", positive, negative, latent, disable_noise=disable_noise
        )[0]["samples"]
