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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import PART_PREFIXES, UNET_KEY_RENAMES
from .config import VARIANTS, ResamplerConfig, UNetConfig
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

VAE_EMBED_DIM = 4

OPENCLIP_H_TEXT = {"width": 1024, "layers": 24, "context": 77, "vocab": 49408, "embed_dim": 1024}
OPENCLIP_H_VISION = {"width": 1280, "layers": 32, "patch": 14, "image": 224, "embed_dim": 1024}
"""OpenCLIP ViT-H/14: the text tower (``cond_stage_model``) and vision tower (``embedder``)."""


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

Shapes = dict[str, tuple[int, ...]]


# --------------------------------------------------------------------------------------------------
# Key layouts, generated from configs (in the original files' order)
# --------------------------------------------------------------------------------------------------


def _resblocks(prefix: str, width: int, layers: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """OpenCLIP ``transformer.resblocks.N``: pre-norm attention (fused in-proj) and a 4x GELU MLP."""
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        yield from [
            (p + "ln_1.weight", (width,)),
            (p + "ln_1.bias", (width,)),
            (p + "attn.in_proj_weight", (3 * width, width)),
            (p + "attn.in_proj_bias", (3 * width,)),
            (p + "attn.out_proj.weight", (width, width)),
            (p + "attn.out_proj.bias", (width,)),
            (p + "ln_2.weight", (width,)),
            (p + "ln_2.bias", (width,)),
            (p + "mlp.c_fc.weight", (4 * width, width)),
            (p + "mlp.c_fc.bias", (4 * width,)),
            (p + "mlp.c_proj.weight", (width, 4 * width)),
            (p + "mlp.c_proj.bias", (width,)),
        ]


def _openclip_text_side(prefix: str, with_transformer: bool, t: Mapping[str, int]) -> tuple[Shapes, Shapes]:
    """The text tower's direct parameters (first in state_dict order) and its trailing modules."""
    head = {
        prefix + "positional_embedding": (t["context"], t["width"]),
        prefix + "text_projection": (t["width"], t["embed_dim"]),
        prefix + "logit_scale": (),
    }
    tail: Shapes = dict(_resblocks(prefix, t["width"], t["layers"])) if with_transformer else {}
    tail.update(
        {
            prefix + "token_embedding.weight": (t["vocab"], t["width"]),
            prefix + "ln_final.weight": (t["width"],),
            prefix + "ln_final.bias": (t["width"],),
        }
    )
    return head, tail


def openclip_h_key_shapes(embedder_text_leftovers: bool = True, sizes: DemoSizes = DEMO_SIZES) -> Shapes:
    """Every ``cond_stage_model.*`` and ``embedder.*`` key of a released file with its shape, in file order.

    ``cond_stage_model.model`` is OpenCLIP-H without its vision tower; ``embedder.model`` is OpenCLIP-H
    without its text transformer, which leaves the text tower's other parameters in the file
    (``embedder_text_leftovers``). ``sizes.text`` / ``sizes.vision``: the towers' sizes (default ViT-H/14).
    """
    text = PART_PREFIXES["text_encoder"] + "model."
    head, tail = _openclip_text_side(text, with_transformer=True, t=sizes.text)
    shapes: Shapes = {**head, **tail}

    image = PART_PREFIXES["clip_vision"] + "model."
    v = sizes.vision
    grid = v["image"] // v["patch"]
    visual = image + "visual."
    vision: Shapes = {
        visual + "class_embedding": (v["width"],),
        visual + "positional_embedding": (grid * grid + 1, v["width"]),
        visual + "proj": (v["width"], v["embed_dim"]),
        visual + "conv1.weight": (v["width"], 3, v["patch"], v["patch"]),
        visual + "ln_pre.weight": (v["width"],),
        visual + "ln_pre.bias": (v["width"],),
        **dict(_resblocks(visual, v["width"], v["layers"])),
        visual + "ln_post.weight": (v["width"],),
        visual + "ln_post.bias": (v["width"],),
    }
    head, tail = _openclip_text_side(image, with_transformer=False, t=sizes.text)
    if embedder_text_leftovers:
        shapes.update({**head, **vision, **tail})
    else:
        shapes.update(vision)
    return shapes


def _resnet(prefix: str, c_in: int, c_out: int) -> Shapes:
    shapes: Shapes = {
        prefix + "norm1.weight": (c_in,),
        prefix + "norm1.bias": (c_in,),
        prefix + "conv1.weight": (c_out, c_in, 3, 3),
        prefix + "conv1.bias": (c_out,),
        prefix + "norm2.weight": (c_out,),
        prefix + "norm2.bias": (c_out,),
        prefix + "conv2.weight": (c_out, c_out, 3, 3),
        prefix + "conv2.bias": (c_out,),
    }
    if c_in != c_out:
        shapes.update({prefix + "nin_shortcut.weight": (c_out, c_in, 1, 1), prefix + "nin_shortcut.bias": (c_out,)})
    return shapes


def _attention(prefix: str, c: int) -> Shapes:
    shapes: Shapes = {prefix + "norm.weight": (c,), prefix + "norm.bias": (c,)}
    for name in ("q", "k", "v", "proj_out"):
        shapes.update({f"{prefix}{name}.weight": (c, c, 1, 1), f"{prefix}{name}.bias": (c,)})
    return shapes


def _mid(prefix: str, c: int) -> Shapes:
    return {
        **_resnet(prefix + "mid.block_1.", c, c),
        **_attention(prefix + "mid.attn_1.", c),
        **_resnet(prefix + "mid.block_2.", c, c),
    }


def vae_key_shapes(ddconfig: Mapping, embed_dim: int = VAE_EMBED_DIM) -> Shapes:
    """The keys and shapes of latent-diffusion's ``AutoencoderKL(ddconfig, embed_dim)`` (without prefix).

    Mirrors ``ldm.modules.diffusionmodules.model.Encoder`` / ``Decoder`` (vanilla attention): the same
    function yields the released ``first_stage_model`` keys for :data:`SD_VAE`.
    """
    ch, mult, blocks = ddconfig["ch"], list(ddconfig["ch_mult"]), ddconfig["num_res_blocks"]
    z, levels = ddconfig["z_channels"], len(mult)
    resolution, attn_at = ddconfig["resolution"], set(ddconfig.get("attn_resolutions", []))

    shapes: Shapes = {"encoder.conv_in.weight": (ch, ddconfig["in_channels"], 3, 3), "encoder.conv_in.bias": (ch,)}
    c_in_mult, res = [1] + mult, resolution
    c = ch
    for i in range(levels):
        c_in, c_out = ch * c_in_mult[i], ch * mult[i]
        for j in range(blocks):
            shapes.update(_resnet(f"encoder.down.{i}.block.{j}.", c_in, c_out))
            c_in = c_out
            if res in attn_at:
                shapes.update(_attention(f"encoder.down.{i}.attn.{j}.", c_out))
        if i != levels - 1:
            shapes.update(
                {
                    f"encoder.down.{i}.downsample.conv.weight": (c_out, c_out, 3, 3),
                    f"encoder.down.{i}.downsample.conv.bias": (c_out,),
                }
            )
            res //= 2
        c = c_out
    shapes.update(_mid("encoder.", c))
    z_out = 2 * z if ddconfig["double_z"] else z
    shapes.update(
        {
            "encoder.norm_out.weight": (c,),
            "encoder.norm_out.bias": (c,),
            "encoder.conv_out.weight": (z_out, c, 3, 3),
            "encoder.conv_out.bias": (z_out,),
        }
    )

    c = ch * mult[-1]
    shapes.update({"decoder.conv_in.weight": (c, z, 3, 3), "decoder.conv_in.bias": (c,)})
    shapes.update(_mid("decoder.", c))
    # The decoder builds its levels from the deepest up but stores them as up.0 (shallowest) .. up.N.
    up: list[Shapes] = []
    res = resolution // 2 ** (levels - 1)
    for i in reversed(range(levels)):
        level: Shapes = {}
        c_out = ch * mult[i]
        for j in range(blocks + 1):
            level.update(_resnet(f"decoder.up.{i}.block.{j}.", c, c_out))
            c = c_out
            if res in attn_at:
                level.update(_attention(f"decoder.up.{i}.attn.{j}.", c_out))
        if i != 0:
            level.update(
                {f"decoder.up.{i}.upsample.conv.weight": (c, c, 3, 3), f"decoder.up.{i}.upsample.conv.bias": (c,)}
            )
            res *= 2
        up.insert(0, level)
    for level in up:
        shapes.update(level)
    shapes.update(
        {
            "decoder.norm_out.weight": (c,),
            "decoder.norm_out.bias": (c,),
            "decoder.conv_out.weight": (ddconfig["out_ch"], c, 3, 3),
            "decoder.conv_out.bias": (ddconfig["out_ch"],),
        }
    )
    shapes.update(
        {
            "quant_conv.weight": (2 * embed_dim, 2 * z, 1, 1),
            "quant_conv.bias": (2 * embed_dim,),
            "post_quant_conv.weight": (z, embed_dim, 1, 1),
            "post_quant_conv.bias": (z,),
        }
    )
    return shapes


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
