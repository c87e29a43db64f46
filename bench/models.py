"""Randomly initialised UNets in the real layout, their inputs, and the weight-dtype modes.

Timing does not depend on weight values, so the full-size networks are built on the meta device,
materialised on the target device and filled in place (no 1.4 B-parameter CPU init, no download).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from dynamicrafter.config import IMAGE_TOKENS_PER_FRAME, TEXT_TOKENS, UNetConfig, VariantConfig, get_variant
from dynamicrafter.fixtures.demo import DEMO_UNET
from dynamicrafter.unet import DynamiCrafterUNet

from . import fp8

WEIGHT_MODES = ("fp32", "fp16", "bf16", "fp8")
"""fp8 = weights stored float8_e4m3fn, upcast per layer to bf16 compute."""

_COMPUTE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}

SMOKE_UNET = dataclasses.replace(DEMO_UNET, context_dim=48)
"""The tests' tiny network (``tests/support/tiny_checkpoints.py`` ``TINY_UNET``: every architectural feature, 2.8 M
parameters)."""
SMOKE_LATENT = (8, 16)


@dataclass(frozen=True)
class Workload:
    """One UNet shape to time: network, latent size, frames; ``full_size`` False marks reduced runs."""

    variant: VariantConfig
    unet: UNetConfig
    latent: tuple[int, int]
    frames: int
    full_size: bool

    @property
    def label(self) -> str:
        h, w = self.latent
        size = "" if self.full_size else f" REDUCED {self.frames}f {h}x{w}"
        return f"{self.variant.name}{size}"


def workload(
    variant: str, latent: tuple[int, int] | None = None, frames: int | None = None, smoke: bool = False
) -> Workload:
    """The released shape of ``variant``, or a reduced/smoke shape (labelled as such)."""
    config = get_variant(variant)
    unet = (
        dataclasses.replace(
            SMOKE_UNET,
            default_fs=config.unet.default_fs,
            image_cross_attention_scale_learnable=config.unet.image_cross_attention_scale_learnable,
        )
        if smoke
        else config.unet
    )
    real_latent, real_frames = config.latent_size, config.frames
    latent = latent or (SMOKE_LATENT if smoke else real_latent)
    frames = frames or real_frames
    full = not smoke and tuple(latent) == tuple(real_latent) and frames == real_frames
    return Workload(config, unet, tuple(latent), frames, full)


def compute_dtype(mode: str) -> torch.dtype:
    return _COMPUTE[mode]


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter in place on its device: matrices/kernels N(0, 1/fan_in), norm weights 1,
    biases and scalars N(0, 0.02^2). Nothing is zero, nothing overflows in fp16 or fp8. Values are drawn
    in float32 and cast, so parameters stored in fp8 (no random kernels of their own) work too."""
    generators: dict[torch.device, torch.Generator] = {}
    for name, param in model.named_parameters():
        generator = generators.setdefault(param.device, torch.Generator(param.device).manual_seed(seed))
        values = torch.empty(param.shape, device=param.device, dtype=torch.float32)
        if param.ndim >= 2:
            values.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
        elif name.endswith("weight"):
            values.fill_(1.0)
        else:
            values.normal_(0.0, 0.02, generator=generator)
        param.copy_(values.to(param.dtype))
    return model


def build_unet(unet: UNetConfig, mode: str, device: torch.device | str, seed: int = 0) -> DynamiCrafterUNet:
    """A random-weight UNet in eval mode whose weights are stored as ``mode`` says."""
    dtype = compute_dtype(mode)
    operations = fp8.operations if mode == "fp8" else nn
    with torch.device("meta"):
        model = DynamiCrafterUNet(unet, dtype=dtype, operations=operations)
    model = randomize_(model.to_empty(device=device), seed)
    if mode == "fp8":
        fp8.store_fp8(model)
    return model.eval().requires_grad_(False)


def unet_inputs(
    work: Workload, batch: int, dtype: torch.dtype, device: torch.device | str, seed: int = 1
) -> dict[str, torch.Tensor]:
    """x [B, 8, T, h, w] (noisy latent + image latent), timesteps, context [B, 77 + 16 T, C], fs."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    h, w = work.latent
    tokens = TEXT_TOKENS + IMAGE_TOKENS_PER_FRAME * work.frames
    x = torch.randn(batch, work.unet.in_channels, work.frames, h, w, generator=generator)
    context = torch.randn(batch, tokens, work.unet.context_dim, generator=generator)
    return {
        "x": x.to(device=device, dtype=dtype),
        "timesteps": torch.full((batch,), 999, dtype=torch.int64, device=device),
        "context": context.to(device=device, dtype=dtype),
        "fs": torch.full((batch,), work.variant.default_fs, dtype=torch.int64, device=device),
    }


def weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
