"""Where a camera model's layers act inside the temporal transformer blocks.

The UNet's ``transformer_options`` carry a :class:`CameraHook` under :data:`CAMERA_OPTION` when a camera path
conditions the call; every transformer block then lets it change the self-attention's input and the
tokens after the self-attention. Blocks without camera layers are passed through by the hook; without the
option nothing runs, so the base models are unchanged.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

CAMERA_OPTION = "dynamicrafter_camera"


class CameraHook(Protocol):
    def self_attention_input(self, block: nn.Module, normed: torch.Tensor) -> torch.Tensor:
        """The normed tokens ``[(b h w), t, c]`` the block's self-attention reads."""
        ...

    def after_self_attention(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The tokens after the self-attention's residual, before the second attention."""
        ...
