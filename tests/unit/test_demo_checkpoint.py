"""dynamicrafter.fixtures.demo: the random demo checkpoint has the released key layout and runs without NaN."""

from __future__ import annotations

import json

import pytest
import torch

from dynamicrafter.checkpoint import load_checkpoint
from dynamicrafter.fixtures.demo import (
    DEMO_RESAMPLER,
    DEMO_UNET,
    NOISE_NOTICE,
    SD_VAE,
    _encoder_value,
    demo_state_dict,
    openclip_h_key_shapes,
    write_demo_checkpoint,
)
from dynamicrafter.fixtures.key_layouts import vae_key_shapes
from dynamicrafter.resampler import Resampler
from dynamicrafter.unet import DynamiCrafterUNet
from support.reference_data import manifest_path

ENCODER_PREFIXES = ("cond_stage_model.", "embedder.")
LEFTOVERS = {
    "embedder.model.positional_embedding",
    "embedder.model.text_projection",
    "embedder.model.logit_scale",
    "embedder.model.token_embedding.weight",
    "embedder.model.ln_final.weight",
    "embedder.model.ln_final.bias",
}


def _manifest(variant: str = "512") -> dict[str, tuple[int, ...]]:
    keys = json.loads(manifest_path(variant).read_text())["keys"]
    return {k: tuple(v) for k, v in keys.items()}


@pytest.mark.parametrize("variant", ["256", "512", "1024", "512_interp"])
def test_encoder_keys_and_shapes_equal_the_released_file(variant):
    released = {k: v for k, v in _manifest(variant).items() if k.startswith(ENCODER_PREFIXES)}
    assert list(openclip_h_key_shapes(embedder_text_leftovers=True).items()) == list(released.items())


def test_demo_omits_only_the_embedders_text_leftovers():
    released = {k: v for k, v in _manifest().items() if k.startswith(ENCODER_PREFIXES)}
    lean = openclip_h_key_shapes(embedder_text_leftovers=False)
    assert set(released) - set(lean) == LEFTOVERS
    assert {k: released[k] for k in lean} == lean
    assert all(k.startswith(("cond_stage_model.model.", "embedder.model.visual.")) for k in lean)


def test_vae_keys_from_sd_ddconfig_equal_the_released_file():
    released = {k[len("first_stage_model.") :]: v for k, v in _manifest().items() if k.startswith("first_stage_model.")}
    assert list(vae_key_shapes(SD_VAE).items()) == list(released.items())


def test_schedule_buffers_are_the_released_ones():
    sd = demo_state_dict("512", with_encoders=False)
    buffers = {k: v for k, v in _manifest().items() if "." not in k}
    assert {k: tuple(sd[k].shape) for k in buffers} == buffers
    assert all(sd[k].dtype == torch.float32 for k in buffers)


def test_demo_file_is_about_two_gigabytes_of_fp16_encoders():
    elements = sum(torch.Size(shape).numel() for shape in openclip_h_key_shapes(False).values())
    assert 1.9e9 < 2 * elements < 2.0e9


def test_encoder_values_are_small():
    # Only the text tower's first keys: drawing everything costs ~1 GB and half a minute.
    shapes = openclip_h_key_shapes()
    first = list(shapes)[:3]
    g = torch.Generator().manual_seed(0)
    values = [_encoder_value(k, shapes[k], g) for k in first]
    assert values[0].std() < 0.03 and float(values[2]) == 0.0  # positional embedding, logit_scale
    assert _encoder_value("x.ln_1.weight", (4,), g).eq(1).all()


def test_demo_file_loads_as_a_512_checkpoint_with_every_part(tmp_path):
    tiny_encoders = {k: torch.zeros(1, dtype=torch.float16) for k in openclip_h_key_shapes(False)}
    path = write_demo_checkpoint(tmp_path / "dynamicrafter_512_demo.ckpt", "512", encoders=tiny_encoders)
    assert not list(tmp_path.glob("*.partial"))
    ckpt = load_checkpoint(path)
    assert ckpt.variant.name == "512"
    assert ckpt.unet_config.model_channels == DEMO_UNET.model_channels
    assert ckpt.unet_config.context_dim == 1024
    assert ckpt.resampler_config == DEMO_RESAMPLER
    for part in ("unet", "resampler", "vae", "text_encoder", "clip_vision"):
        assert ckpt.has(part), part
    assert set(ckpt.require("clip_vision")) == {
        k[len("embedder.") :] for k in tiny_encoders if k.startswith("embedder.")
    }


def test_safetensors_suffix_writes_a_flat_file(tmp_path):
    from safetensors.torch import load_file

    tiny_encoders = {k: torch.zeros(1, dtype=torch.float16) for k in openclip_h_key_shapes(False)}
    path = write_demo_checkpoint(tmp_path / "demo.safetensors", "256", encoders=tiny_encoders)
    sd = load_file(str(path))
    assert "model.diffusion_model.framestride_embed.0.weight" in sd
    assert load_checkpoint(path).variant.name == "256"


def test_missing_encoder_keys_are_an_error():
    with pytest.raises(ValueError, match="lack"):
        demo_state_dict("512", encoders={})


@pytest.mark.parametrize("variant", ["256", "512"])
def test_tiny_networks_run_without_nan(variant, single_thread):
    sd = demo_state_dict(variant, with_encoders=False)
    unet_sd = {k[len("model.diffusion_model.") :]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    unet_sd = {k.replace("framestride_embed.", "fps_embedding.", 1): v for k, v in unet_sd.items()}
    config = DEMO_UNET.__class__(**{**DEMO_UNET.__dict__, "image_cross_attention_scale_learnable": variant == "256"})
    unet = DynamiCrafterUNet(config)
    unet.load_state_dict(unet_sd, strict=True)
    resampler = Resampler(DEMO_RESAMPLER)
    resampler.load_state_dict(
        {k[len("image_proj_model.") :]: v for k, v in sd.items() if k.startswith("image_proj_model.")}, strict=True
    )
    torch.manual_seed(0)
    with torch.no_grad():
        tokens = resampler(torch.randn(1, 257, 1280))
        out = unet(torch.randn(1, 8, 16, 8, 16), torch.tensor([999]), torch.randn(1, 77, 1024), image_context=tokens)
    assert torch.isfinite(tokens).all() and torch.isfinite(out).all()
    assert out.shape == (1, 4, 16, 8, 16)


def test_the_docstring_says_it_is_noise():
    import dynamicrafter.fixtures.demo as demo

    assert "random noise" in demo.__doc__ and "random noise" in NOISE_NOTICE
