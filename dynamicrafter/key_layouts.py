"""Key layouts of the released files' parts that the pack reads but does not build: the OpenCLIP-H towers
(``cond_stage_model.`` / ``embedder.``) and the KL-f8 VAE (``first_stage_model.``), each key with its shape in
the original files' order, generated from the networks' sizes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .checkpoint import PART_PREFIXES

Shapes = dict[str, tuple[int, ...]]

VAE_EMBED_DIM = 4

OPENCLIP_H_TEXT = {"width": 1024, "layers": 24, "context": 77, "vocab": 49408, "embed_dim": 1024}
OPENCLIP_H_VISION = {"width": 1280, "layers": 32, "patch": 14, "image": 224, "embed_dim": 1024}
"""OpenCLIP ViT-H/14: the text tower (``cond_stage_model``) and vision tower (``embedder``)."""


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


def openclip_key_shapes(
    embedder_text_leftovers: bool = True,
    text_tower: Mapping[str, int] = OPENCLIP_H_TEXT,
    vision_tower: Mapping[str, int] = OPENCLIP_H_VISION,
) -> Shapes:
    """Every ``cond_stage_model.*`` and ``embedder.*`` key of a released file with its shape, in file order.

    ``cond_stage_model.model`` is OpenCLIP-H without its vision tower; ``embedder.model`` is OpenCLIP-H
    without its text transformer, which leaves the text tower's other parameters in the file
    (``embedder_text_leftovers``). ``text_tower`` / ``vision_tower``: the towers' sizes (default ViT-H/14).
    """
    text = PART_PREFIXES["text_encoder"] + "model."
    head, tail = _openclip_text_side(text, with_transformer=True, t=text_tower)
    shapes: Shapes = {**head, **tail}

    image = PART_PREFIXES["clip_vision"] + "model."
    v = vision_tower
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
    head, tail = _openclip_text_side(image, with_transformer=False, t=text_tower)
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
    function yields the released ``first_stage_model`` keys for SD's ddconfig (``demo.SD_VAE``).
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
