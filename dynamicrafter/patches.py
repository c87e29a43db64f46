"""Patch points a host can hook into the UNet, by the conventions of ComfyUI's ``transformer_options``.

The host passes one plain dict per model call: ``patches`` (lists of callables per patch point),
``patches_replace`` (attention replacements keyed by ``(block kind, block number[, transformer index])``)
and the values patches read (``block``, ``block_index``, ``original_shape``, ``cond_or_uncond``, ...).
The networks call these helpers where the host's own image UNets call theirs, so patches written for
those act here too. Shapes that patches see are the frames-as-batch ones: ``[(b t), c, h, w]``.
Nothing here imports the host; callables come in through the dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Options = dict[str, Any]
"""The host's ``transformer_options`` for one model call (mutated as the host's UNets mutate it)."""


def patches(options: Options, point: str) -> list[Callable]:
    """The callables registered for one patch point (``attn1_patch``, ``output_block_patch``, ...)."""
    return options.get("patches", {}).get(point, [])


def attention_replacement(options: Options, attention: str, block_index: int) -> Callable | None:
    """The ``patches_replace`` entry for ``attn1``/``attn2`` of the current block, as the host looks it up."""
    table = options.get("patches_replace", {}).get(attention, {})
    block = options.get("block")
    if not table or block is None:
        return None
    exact = (block[0], block[1], block_index)
    if exact in table:
        return table[exact]
    return table.get(block)


def extra_options(options: Options, heads: int, dim_head: int) -> Options:
    """What attention patches receive: the options without the patch tables, plus the head layout."""
    extra = {k: v for k, v in options.items() if k not in ("patches", "patches_replace")}
    extra.update(n_heads=heads, dim_head=dim_head, attn_precision=None)
    return extra


def without_patches(options: Options) -> Options:
    """Options for the temporal attention layers.

    The host's attention patches are written for image tokens and text context (``h*w`` tokens per
    frame); across-frame attention gets the rest, such as the attention-backend override.
    """
    return {k: v for k, v in options.items() if k not in ("patches", "patches_replace")}


def apply_control(h: torch.Tensor, control: dict[str, list] | None, name: str) -> torch.Tensor:
    """Add the next ControlNet residual for ``name`` (``input``/``middle``/``output``), as the host does."""
    if not control or not control.get(name):
        return h
    residual = control[name].pop()
    if residual is None:
        return h
    if residual.shape != h.shape:
        raise ValueError(
            f"the ControlNet gives a {name} residual of shape {list(residual.shape)} where the "
            f"DynamiCrafter UNet has {list(h.shape)}: use a ControlNet for Stable Diffusion 2.x "
            "(SD2.1 layout, 1024-wide text context)"
        )
    return h + residual.to(h.dtype)
