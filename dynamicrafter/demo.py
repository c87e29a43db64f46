"""A tiny DynamiCrafter checkpoint filled with RANDOM weights, for demos and tests: it makes random noise.

:func:`write_demo_checkpoint` writes a file in the original checkpoint key layout (``model.diffusion_model.``,
``image_proj_model.``, ``first_stage_model.``, ``cond_stage_model.``, ``embedder.`` and the schedule
buffers) that the pack's own loader node loads like a released file, so the whole image-to-video graph
runs on a machine without the 10 GB download. **The video it produces is random noise**: nothing in it
was trained.

What is in the file:

- UNet and Resampler: every feature of the real networks at a tiny width (:data:`DEMO_UNET`,
  :data:`DEMO_RESAMPLER`), with the real context width 1024 and CLIP width 1280 so that the real
  encoders can drive them.
- VAE: the SD KL autoencoder's key layout at a narrow width (:data:`DEMO_VAE`), keys generated from the
  ddconfig by :func:`vae_key_shapes` (the same function gives the released VAE's keys for SD's ddconfig).
- Text and image encoders: full-size OpenCLIP ViT-H/14 text tower (``cond_stage_model.model.*``) and
  vision tower (``embedder.model.visual.*``), because the host builds those from their known full sizes.
  Key names and shapes come from :func:`openclip_h_key_shapes`; they equal the released files'.
  The original ``embedder.`` part also carries the text-side leftovers of the OpenCLIP model it was cut
  from (``embedder.model.token_embedding``, ``ln_final``, ``positional_embedding``, ``text_projection``,
  ``logit_scale``), which nothing reads: :func:`write_demo_checkpoint` OMITS them by default (50 M fewer
  parameters); ``embedder_text_leftovers=True`` includes them.
- Weights are small-std Gaussian (norms near identity) so every network runs without overflow; the
  encoders are fp16 (about 2 GB in all), the tiny networks fp32 and the schedule buffers float32.

Pure PyTorch (plus safetensors): never imports ComfyUI. ``python -m dynamicrafter.demo PATH [VARIANT]``
writes one from the command line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import PART_PREFIXES, UNET_KEY_RENAMES
from .config import VARIANTS, ResamplerConfig, UNetConfig
from .key_layouts import OPENCLIP_H_TEXT, OPENCLIP_H_VISION, Shapes, openclip_key_shapes, vae_key_shapes
from .resampler import Resampler
from .schedule import make_schedule
from .unet import DynamiCrafterUNet

log = logging.getLogger(__name__)

NOISE_NOTICE = (
    "the demo checkpoint has RANDOM weights: the video it makes is random noise, not an animation of the picture"
)

DEMO_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1, 1, 2), num_head_channels=8, context_dim=1024)
"""Tiny UNet with every feature of the real one; context width 1024 as OpenCLIP-H's text tokens."""

DEMO_RESAMPLER = ResamplerConfig(dim=32, depth=2, heads=2, embedding_dim=1280, output_dim=1024)
"""Tiny Resampler reading OpenCLIP-H vision tokens (1280) and writing context tokens (1024)."""

DEMO_VAE: dict = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 2, 2, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "dropout": 0.0,
}
"""A narrow SD KL-f8 VAE (SD's own: ch 128, ch_mult [1, 2, 4, 4], 2 res blocks)."""

SD_VAE: dict = {**DEMO_VAE, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2}
"""The released files' VAE ddconfig (``first_stage_model``)."""


@dataclass(frozen=True)
class DemoSizes:
    """The sizes of a demo checkpoint's networks: tiny UNet and Resampler, and the encoder towers.

    The default has the released encoders' sizes (the pack's loader builds the host's encoders from
    whatever sizes a file has, so narrower towers load the same way; tests use them to stay fast).
    """

    unet: UNetConfig = DEMO_UNET
    resampler: ResamplerConfig = DEMO_RESAMPLER
    text: Mapping[str, int] = field(default_factory=lambda: dict(OPENCLIP_H_TEXT))
    vision: Mapping[str, int] = field(default_factory=lambda: dict(OPENCLIP_H_VISION))


DEMO_SIZES = DemoSizes()


def openclip_h_key_shapes(embedder_text_leftovers: bool = True, sizes: DemoSizes = DEMO_SIZES) -> Shapes:
    """The OpenCLIP keys of a demo checkpoint with ``sizes``' towers (default: a released file's, ViT-H/14)."""
    return openclip_key_shapes(embedder_text_leftovers, sizes.text, sizes.vision)


# --------------------------------------------------------------------------------------------------
# Random weights
# --------------------------------------------------------------------------------------------------


def _encoder_value(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Layer-norm weights 1, biases (and logit_scale) 0, everything else N(0, 0.02)."""
    leaf = key.rsplit(".", 1)[-1]
    if ("ln" in key or "norm" in key) and leaf == "weight":
        return torch.ones(shape)
    if leaf == "bias" or key.endswith("logit_scale"):
        return torch.zeros(shape)
    return torch.randn(shape, generator=generator) * 0.02


def openclip_h_state_dict(
    seed: int = 0,
    embedder_text_leftovers: bool = True,
    dtype: torch.dtype = torch.float16,
    sizes: DemoSizes = DEMO_SIZES,
) -> dict[str, torch.Tensor]:
    """Random OpenCLIP text (``cond_stage_model.``) and vision (``embedder.``) weights (default: full-size ViT-H).

    Values are drawn in file order from one generator, so the same ``seed`` gives the same tensors for
    every key whichever ``embedder_text_leftovers`` is chosen (the leftovers are drawn and dropped).
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    keep = openclip_h_key_shapes(embedder_text_leftovers, sizes).keys()
    for key, shape in openclip_h_key_shapes(True, sizes).items():
        value = _encoder_value(key, shape, generator).to(dtype)
        if key in keep:
            out[key] = value
    return out


def random_module_state(module: torch.nn.Module, seed: int, std: float = 0.05) -> dict[str, torch.Tensor]:
    """Random weights for ``module``; norms near identity so activations stay in range."""
    generator = torch.Generator().manual_seed(seed)
    norms = {name for name, m in module.named_modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))}
    out = {}
    for key, value in module.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        noise = torch.randn(value.shape, generator=generator)
        out[key] = (1 + 0.1 * noise if leaf == "weight" else 0.1 * noise) if owner in norms else noise * std
    return out


def unet_state_dict(
    variant: str,
    seed: int = 1,
    config: UNetConfig = DEMO_UNET,
    init: Callable[[torch.nn.Module, int], dict[str, torch.Tensor]] = random_module_state,
) -> dict[str, torch.Tensor]:
    """Random UNet weights (``init``) under the checkpoint's names (the 256 file's fs MLP is ``framestride_embed``)."""
    config = dataclasses.replace(config, image_cross_attention_scale_learnable=variant == "256")
    sd = init(DynamiCrafterUNet(config), seed)
    if variant == "256":
        file_names = {module: stored for stored, module in UNET_KEY_RENAMES.items()}
        sd = {next((file_names[p] + k[len(p) :] for p in file_names if k.startswith(p)), k): v for k, v in sd.items()}
    return sd


def resampler_state_dict(seed: int = 2, config: ResamplerConfig = DEMO_RESAMPLER) -> dict[str, torch.Tensor]:
    return random_module_state(Resampler(config), seed)


def vae_state_dict(ddconfig: Mapping = DEMO_VAE, seed: int = 3) -> dict[str, torch.Tensor]:
    """A random SD-layout KL VAE (keys without ``first_stage_model.``); GroupNorms near identity."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in vae_key_shapes(ddconfig).items():
        noise = torch.randn(shape, generator=generator)
        if key.rsplit(".", 2)[-2].startswith("norm"):
            out[key] = 1 + 0.1 * noise if key.endswith(".weight") else 0.1 * noise
        else:
            out[key] = noise * 0.02
    return out


def demo_state_dict(
    variant: str = "512",
    with_encoders: bool = True,
    embedder_text_leftovers: bool = False,
    encoders: Mapping[str, torch.Tensor] | None = None,
    sizes: DemoSizes = DEMO_SIZES,
) -> dict[str, torch.Tensor]:
    """A complete original-layout state dict for ``variant`` whose networks run on a CPU in seconds.

    ``encoders``: ready-made ``cond_stage_model.`` / ``embedder.`` tensors (e.g. from a cache) instead of
    drawing them; keys outside the chosen layout are dropped. ``sizes``: the networks' sizes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    sd = {PART_PREFIXES["unet"] + k: v for k, v in unet_state_dict(variant, config=sizes.unet).items()}
    sd.update({PART_PREFIXES["resampler"] + k: v for k, v in resampler_state_dict(config=sizes.resampler).items()})
    sd.update({PART_PREFIXES["vae"] + k: v for k, v in vae_state_dict().items()})
    sd.update({k: v.float() for k, v in make_schedule(VARIANTS[variant].schedule).buffers().items()})
    if with_encoders:
        keys = openclip_h_key_shapes(embedder_text_leftovers, sizes)
        if encoders is None:
            encoders = openclip_h_state_dict(embedder_text_leftovers=embedder_text_leftovers, sizes=sizes)
        missing = [k for k in keys if k not in encoders]
        if missing:
            raise ValueError(f"the encoder weights lack {len(missing)} keys, e.g. {missing[0]!r}")
        sd.update({k: encoders[k] for k in keys})
    return sd


def save_checkpoint(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Atomically write ``sd``: ``.safetensors`` as is, anything else as the original ``{"state_dict": sd}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    tensors = {k: v.contiguous() for k, v in sd.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(partial))
    else:
        torch.save({"state_dict": tensors}, partial)
    os.replace(partial, path)
    return path


def write_demo_checkpoint(
    path: str | os.PathLike,
    variant: str = "512",
    *,
    embedder_text_leftovers: bool = False,
    encoders: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a tiny RANDOM DynamiCrafter checkpoint (about 2 GB) that the pack's loader loads.

    The video it makes is random noise. ``.ckpt`` (or any other suffix) gets the original Lightning
    container ``{"state_dict": ...}``; ``.safetensors`` a flat file with the same keys. Written to
    ``<path>.partial`` first, so an interrupted write never leaves a damaged file under ``path``.
    """
    log.warning("writing %s: %s", path, NOISE_NOTICE)
    return save_checkpoint(
        demo_state_dict(variant, embedder_text_leftovers=embedder_text_leftovers, encoders=encoders), path
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2 or args[0].startswith("-"):
        print("usage: python -m dynamicrafter.demo PATH [VARIANT]\n" + NOISE_NOTICE, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(write_demo_checkpoint(args[0], *(args[1:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
