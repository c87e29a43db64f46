"""Import the ORIGINAL DynamiCrafter ``UNetModel`` from an extracted copy of its repository.

Nothing of the original is copied here: its folder (``--original`` or ``DYNAMICRAFTER_ORIGINAL``)
goes on ``sys.path``. Importing ``lvdm.modules.networks.openaimodel3d`` needs numpy, einops and
cv2 (``utils/utils.py`` imports it); an import-time ``torchvision`` stand-in folder (``--stubs`` or
``DYNAMICRAFTER_ORIGINAL_STUBS``) is only needed where the original's other modules are imported.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn

ORIGINAL_COMMIT = "c453369367122d7fbb0aa38f124e76dc8fe2a91c"


def original_path(cli_value: str | None) -> Path:
    value = cli_value or os.environ.get("DYNAMICRAFTER_ORIGINAL")
    if not value:
        raise SystemExit("give the extracted original repository with --original or DYNAMICRAFTER_ORIGINAL")
    path = Path(value).resolve()
    if not (path / "lvdm" / "modules" / "networks" / "openaimodel3d.py").is_file():
        raise SystemExit(f"{path} does not look like Doubiiu/DynamiCrafter (no lvdm/modules/networks/openaimodel3d.py)")
    return path


def import_original_unet(repo: Path, stubs: str | None = None) -> type[nn.Module]:
    """The original ``UNetModel`` class, with ``repo`` (and the stub folder) first on ``sys.path``."""
    stubs = stubs or os.environ.get("DYNAMICRAFTER_ORIGINAL_STUBS")
    for entry in (str(repo), stubs):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    module = importlib.import_module("lvdm.modules.networks.openaimodel3d")
    if not Path(module.__file__).resolve().is_relative_to(repo):
        raise SystemExit(f"imported {module.__file__}, not the copy in {repo}: another 'lvdm' is on sys.path")
    return module.UNetModel


def original_kwargs(overrides: dict[str, Any]) -> dict[str, Any]:
    """``UNetModel`` constructor arguments of the released yaml, updated with ``overrides``."""
    released: dict[str, Any] = {
        "in_channels": 8,
        "out_channels": 4,
        "model_channels": 320,
        "attention_resolutions": [4, 2, 1],
        "num_res_blocks": 2,
        "channel_mult": [1, 2, 4, 4],
        "dropout": 0.1,
        "num_head_channels": 64,
        "transformer_depth": 1,
        "context_dim": 1024,
        "use_linear": True,
        "use_checkpoint": False,
        "temporal_conv": True,
        "temporal_attention": True,
        "temporal_selfatt_only": True,
        "use_relative_position": False,
        "use_causal_attention": False,
        "temporal_length": 16,
        "addition_attention": True,
        "image_cross_attention": True,
        "image_cross_attention_scale_learnable": False,
        "default_fs": 24,
        "fs_condition": True,
    }
    return {**released, **overrides}
