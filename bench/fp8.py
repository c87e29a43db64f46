"""Weights stored as float8_e4m3fn, upcast to the activation dtype inside every layer's forward.

This is the "fp8 storage" mode of ComfyUI's weight_dtype option: it halves weight memory against
bf16 but computes in bf16 (no fp8 matmul). Norms keep their weights in the compute dtype.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn


def _bias(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    return None if layer.bias is None else layer.bias.to(x.dtype)


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), _bias(self, x))


class Conv1d(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight.to(x.dtype), _bias(self, x))


class Conv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight.to(x.dtype), _bias(self, x))


class Conv3d(nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight.to(x.dtype), _bias(self, x))


operations = SimpleNamespace(
    Linear=Linear, Conv1d=Conv1d, Conv2d=Conv2d, Conv3d=Conv3d, GroupNorm=nn.GroupNorm, LayerNorm=nn.LayerNorm
)
"""The ``operations`` namespace to build a network with (weights are cast by :func:`store_fp8`)."""

_CAST_LAYERS = (Linear, Conv1d, Conv2d, Conv3d)


@torch.no_grad()
def store_fp8(model: nn.Module) -> nn.Module:
    """Convert the weights of every upcasting layer to float8_e4m3fn in place (biases stay)."""
    for module in model.modules():
        if isinstance(module, _CAST_LAYERS):
            module.weight = nn.Parameter(module.weight.to(FP8), requires_grad=False)
    return model
