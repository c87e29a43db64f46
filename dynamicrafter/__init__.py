"""DynamiCrafter in pure PyTorch: configs, networks, schedule, reference sampler and checkpoint loading.

Importable without ComfyUI; the host passes its ``operations`` and ``attention`` to the networks.
"""

from .checkpoint import CheckpointError, DynamiCrafterCheckpoint, MissingPartError, load_checkpoint
from .config import VARIANTS, ResamplerConfig, UNetConfig, VariantConfig, get_variant
from .resampler import Resampler
from .unet import DynamiCrafterUNet

__all__ = [
    "CheckpointError",
    "DynamiCrafterCheckpoint",
    "MissingPartError",
    "load_checkpoint",
    "VARIANTS",
    "ResamplerConfig",
    "UNetConfig",
    "VariantConfig",
    "get_variant",
    "Resampler",
    "DynamiCrafterUNet",
]
