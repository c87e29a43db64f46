"""nodes/adapter/encoders.py against open_clip (the original's encoders), full-size ViT-H/14 with random weights.

The oracle is open_clip 2.22.0's ViT-H-14 (the version the original pins) run the way the original's
``FrozenOpenCLIPEmbedder`` (penultimate: 23 of 24 blocks + ln_final) and ``FrozenOpenCLIPImageEmbedderV2``
(kornia squash-resize to 224, all 257 tokens of the last block, no ln_post) run it. Its weights are
written in the checkpoint's key layout (``cond_stage_model.model.*``, ``embedder.model.*``), split by
the pack's checkpoint code and loaded through the pack's functions into the host's models.

Precision: the host stores text-encoder and CLIP-vision weights in fp16 on CPU by default; the comparison
forces fp32 (text: ``model_options={"dtype": torch.float32}``; vision: the host's ``--fp32-text-enc``
flag, ``args.fp32_text_enc``), so only float32 round-off remains.
"""

from __future__ import annotations

import gc
import json
from types import ModuleType

import pytest
import torch

from dynamicrafter.checkpoint import PART_PREFIXES, split_parts
from support.reference_data import manifest_path

pytestmark = pytest.mark.host

PROMPTS = ["", "a corgi running on the beach, waves splashing, 4k", "Fireworks over a CITY at night \u2014 slow pan!"]
IMAGE_HW = (320, 512)  # the 512 variant's frame: non-square, squashed to 224x224
TOLERANCE = 1e-4  # max |ours - oracle| / std(oracle): float32 round-off
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ORPHAN_TEXT_KEYS = (
    "token_embedding.weight",
    "positional_embedding",
    "ln_final.weight",
    "ln_final.bias",
    "text_projection",
    "logit_scale",
)


def _open_clip() -> ModuleType:
    try:
        import open_clip
    except ImportError:
        pytest.fail("open_clip is the oracle of this test: install requirements-test.txt (open-clip-torch)")
    return open_clip


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours.float() - reference.float()).abs().max() / reference.float().std())


def _free(comfy_mm: ModuleType) -> None:
    comfy_mm.unload_all_models()
    gc.collect()


@pytest.fixture(scope="module")
def encoders(comfy_host) -> ModuleType:
    return comfy_host.import_pack_module("nodes.adapter.encoders")


@pytest.fixture(scope="module")
def oracle() -> torch.nn.Module:
    """open_clip ViT-H-14, seeded random weights, every LayerNorm moved away from weight 1 / bias 0."""
    open_clip = _open_clip()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model("ViT-H-14", pretrained=None).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def parts(oracle: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The oracle's weights in the original checkpoint layout, split into parts by the pack's checkpoint code.

    Text part: the text tower only (``cond_stage_model.model.*``, no ``visual.*``). Vision part: the vision
    tower plus the orphan text-side parameters the original keeps (``embedder.model.*``).
    """
    flat: dict[str, torch.Tensor] = {}
    for key, tensor in oracle.state_dict().items():
        if key == "attn_mask":
            continue
        if not key.startswith("visual."):
            flat[PART_PREFIXES["text_encoder"] + "model." + key] = tensor
        if key.startswith("visual.") or key in ORPHAN_TEXT_KEYS:
            flat[PART_PREFIXES["clip_vision"] + "model." + key] = tensor
    split, _ = split_parts(flat)
    return split


def _oracle_text(model: torch.nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``FrozenOpenCLIPEmbedder.encode_with_transformer`` with layer "penultimate"; also the all-blocks result."""
    batch_first = getattr(model.transformer, "batch_first", False)
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.positional_embedding
        if not batch_first:
            x = x.permute(1, 0, 2)  # NLD -> LND
        blocks = model.transformer.resblocks
        for i, block in enumerate(blocks):
            if i == len(blocks) - 1:  # layer_idx 1: stop before the last block
                break
            x = block(x, attn_mask=model.attn_mask)
        x_all = blocks[-1](x, attn_mask=model.attn_mask)
        if not batch_first:
            x, x_all = x.permute(1, 0, 2), x_all.permute(1, 0, 2)
        return model.ln_final(x), model.ln_final(x_all)


def _oracle_image(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``FrozenOpenCLIPImageEmbedderV2``: ``x`` [B, 3, H, W] in [-1, 1] -> [B, 257, 1280]."""
    import kornia

    visual = model.visual
    with torch.no_grad():
        x = kornia.geometry.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
        x = (x + 1.0) / 2.0
        x = kornia.enhance.normalize(x, torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD))
        assert not visual.input_patchnorm  # ViT-H-14: the plain conv1 branch of the original
        x = visual.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat(
            [
                visual.class_embedding.to(x.dtype)
                + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device),
                x,
            ],
            dim=1,
        )
        x = x + visual.positional_embedding.to(x.dtype)
        x = visual.patch_dropout(x)
        x = visual.ln_pre(x)
        batch_first = getattr(visual.transformer, "batch_first", False)
        x = visual.transformer(x if batch_first else x.permute(1, 0, 2))
        return x if batch_first else x.permute(1, 0, 2)


@pytest.fixture(scope="module")
def image_results(
    comfy_host, encoders: ModuleType, oracle: torch.nn.Module, parts: dict[str, dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Ours and the oracle's tokens for [random image, unconditional image] (one batch of 2)."""
    import comfy.model_management as mm
    from comfy.cli_args import args

    generator = torch.Generator().manual_seed(2)
    image = torch.rand(1, *IMAGE_HW, 3, generator=generator)
    gray = encoders.unconditional_image(*IMAGE_HW)
    batch = torch.cat([image, gray])
    keys_before = set(parts["clip_vision"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(args, "fp32_text_enc", True)
        clip_vision = encoders.clip_vision_from_state_dict(parts["clip_vision"])
    try:
        assert clip_vision.dtype == torch.float32
        assert set(parts["clip_vision"]) == keys_before, "the caller's state dict was modified"
        ours = encoders.image_tokens(clip_vision, batch)
    finally:
        del clip_vision
        _free(mm)
    reference = _oracle_image(oracle, torch.cat([image.permute(0, 3, 1, 2) * 2.0 - 1.0, torch.zeros(1, 3, *IMAGE_HW)]))
    with torch.no_grad():
        reference_ln_post = oracle.visual.ln_post(reference)
    return {"ours": ours, "reference": reference, "reference_ln_post": reference_ln_post}


def test_parts_have_the_checkpoint_layout(parts: dict[str, dict[str, torch.Tensor]]) -> None:
    manifest = json.loads(manifest_path("512").read_text())["keys"]
    for part in ("text_encoder", "clip_vision"):
        prefix = PART_PREFIXES[part]
        expected = {k[len(prefix) :]: list(shape) for k, shape in manifest.items() if k.startswith(prefix)}
        assert {k: list(v.shape) for k, v in parts[part].items()} == expected, part


def test_text_tokens_match_open_clip(
    comfy_host, encoders: ModuleType, oracle: torch.nn.Module, parts: dict[str, dict[str, torch.Tensor]]
) -> None:
    import comfy.model_management as mm

    open_clip = _open_clip()
    tokens = open_clip.tokenize(PROMPTS)
    reference, reference_all_blocks = _oracle_text(oracle, tokens)
    keys_before = set(parts["text_encoder"])
    clip = encoders.text_encoder_from_state_dict(parts["text_encoder"], model_options={"dtype": torch.float32})
    try:
        assert set(parts["text_encoder"]) == keys_before, "the caller's state dict was modified"
        assert clip.cond_stage_model.dtypes == {torch.float32}
        for i, prompt in enumerate(PROMPTS):
            host_tokens = clip.tokenize(prompt)
            assert [t for t, _ in host_tokens["h"][0]] == tokens[i].tolist(), f"tokenizer differs for {prompt!r}"
            cond = clip.encode_from_tokens(host_tokens, return_pooled=False)
            assert cond.shape == (1, 77, 1024) and cond.dtype == torch.float32
            error = _relative_error(cond[0], reference[i])
            print(f"text {prompt!r}: max abs err / std = {error:.3g}")
            assert error < TOLERANCE, f"text tokens differ for {prompt!r}: {error:.3g}"
            # Sensitivity: the last block (layer "last" instead of "penultimate") changes the result a lot.
            assert _relative_error(reference_all_blocks[i], reference[i]) > 1000 * TOLERANCE
    finally:
        del clip
        _free(mm)


def test_image_tokens_match_open_clip(image_results: dict[str, torch.Tensor]) -> None:
    ours, reference = image_results["ours"], image_results["reference"]
    assert ours.shape == (2, 257, 1280) and ours.dtype == torch.float32
    error = _relative_error(ours[0], reference[0])
    print(f"image {IMAGE_HW}: max abs err / std = {error:.3g}")
    assert error < TOLERANCE, f"image tokens differ: {error:.3g}"
    # Sensitivity: applying ln_post (the host's post layer norm) would be far off.
    assert _relative_error(image_results["reference_ln_post"][0], reference[0]) > 1000 * TOLERANCE


def test_unconditional_image_tokens_match_open_clip_zero_image(
    encoders: ModuleType, image_results: dict[str, torch.Tensor]
) -> None:
    gray = encoders.unconditional_image(*IMAGE_HW, batch_size=2)
    assert gray.shape == (2, *IMAGE_HW, 3) and gray.dtype == torch.float32
    assert torch.equal(gray, torch.full_like(gray, 0.5)) and torch.equal(gray * 2 - 1, torch.zeros_like(gray))
    ours, reference = image_results["ours"][1], image_results["reference"][1]
    error = _relative_error(ours, reference)
    print(f"unconditional image: max abs err / std = {error:.3g}")
    assert error < TOLERANCE, f"unconditional image tokens differ: {error:.3g}"
    # Not the zero tokens some packs use instead.
    assert _relative_error(torch.zeros_like(reference), reference) > 1000 * TOLERANCE


def test_wrong_parts_are_refused(encoders: ModuleType, parts: dict[str, dict[str, torch.Tensor]]) -> None:
    with pytest.raises(ValueError, match="OpenCLIP vision tower"):
        encoders.clip_vision_from_state_dict(parts["text_encoder"])
    with pytest.raises(ValueError, match="OpenCLIP text encoder"):
        encoders.text_encoder_from_state_dict({"model.visual.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        encoders.clip_pixel_values(torch.zeros(3, 8, 8))
