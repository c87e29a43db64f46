"""LoRAs through the stock LoraLoaderModelOnly and SD 2.1-layout ControlNets through the stock ControlNet nodes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import checkpoint_from_state_dict
from support.sd21_layout import (
    FRAMES,
    H,
    W,
    controlnet_state_dict,
    hint_images,
    sd21_layout_checkpoint,
    sd21_layout_conditioning,
    sd21_layout_conds,
)
from support.stock_nodes import ksample
from support.tiny_host import FRAMES as TINY_FRAMES
from support.tiny_host import H as TINY_H
from support.tiny_host import W as TINY_W
from support.tiny_host import conditioning, host_conds, relative_error, tiny_checkpoint

RANK, ALPHA, STRENGTH = 2, 1.0, 0.8

# (LoRA key stem, checkpoint key of the weight, names of the up/down tensors): one per naming convention
LORA_TARGETS = [
    (
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        ("lora_up", "lora_down"),
    ),
    (
        "diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q",
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight",
        ("lora_B", "lora_A"),
    ),
    (
        "model.diffusion_model.input_blocks.1.0.in_layers.2",
        "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
        ("lora_up", "lora_down"),
    ),
    (
        "model.diffusion_model.input_blocks.1.2.transformer_blocks.0.attn1.to_v",
        "model.diffusion_model.input_blocks.1.2.transformer_blocks.0.attn1.to_v.weight",
        ("lora_up", "lora_down"),
    ),
    ("image_proj_model.layers.0.0.to_q", "image_proj_model.layers.0.0.to_q.weight", ("lora_up", "lora_down")),
]


def _original_state(ckpt) -> dict[str, torch.Tensor]:
    sd = {f"model.diffusion_model.{k}": v.clone() for k, v in ckpt.require("unet").items()}
    sd.update({f"image_proj_model.{k}": v.clone() for k, v in ckpt.require("resampler").items()})
    return sd


def _random_lora(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A LoRA over LORA_TARGETS and the same weights merged by hand: W + strength * alpha / rank * up @ down."""
    g = torch.Generator().manual_seed(11)
    lora, merged = {}, dict(sd)
    for stem, key, (up_name, down_name) in LORA_TARGETS:
        weight = sd[key]
        down_shape = (RANK, *weight.shape[1:]) if weight.dim() == 2 else (RANK, weight.shape[1], *weight.shape[2:])
        down = torch.randn(down_shape, generator=g) * 0.3
        up = torch.randn((weight.shape[0], RANK, *([1] * (weight.dim() - 2))), generator=g) * 0.3
        lora[f"{stem}.{up_name}.weight"], lora[f"{stem}.{down_name}.weight"] = up, down
        lora[f"{stem}.alpha"] = torch.tensor(ALPHA)
        delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
        merged[key] = weight + (STRENGTH * (ALPHA / RANK)) * delta
    return lora, merged


def test_lora_through_stock_loader_equals_merged_weights(comfy_host, tmp_path, single_thread):
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    ckpt = tiny_checkpoint("512")
    lora, merged = _random_lora(_original_state(ckpt))
    (tmp_path / "loras").mkdir()
    save_file(lora, str(tmp_path / "loras" / "dynamicrafter_test_lora.safetensors"))
    comfy_host.folder_paths.add_model_folder_path("loras", str(tmp_path / "loras"))

    model = host_model.model_from_checkpoint(ckpt, "fp32")
    with_lora = comfy_host.nodes.LoraLoaderModelOnly().load_lora_model_only(
        model, "dynamicrafter_test_lora.safetensors", STRENGTH
    )[0]
    # the host model holds the UNet as diffusion_model.* and the Resampler as diffusion_model.image_proj_model.*
    assert set(with_lora.patches) == {
        "diffusion_model." + key.removeprefix("model.diffusion_model.") for _, key, _ in LORA_TARGETS
    }

    by_hand = host_model.model_from_checkpoint(checkpoint_from_state_dict(ckpt.path, merged, "512"), "fp32")
    positive, negative = host_conds(comfy_host.import_pack_module("nodes.adapter.family"), *conditioning(), 24)
    latent = {"samples": torch.zeros(TINY_FRAMES, 4, TINY_H, TINY_W)}
    plain = ksample(comfy_host.nodes, model, positive, negative, latent)  # first: a stale Resampler output would show
    out = ksample(comfy_host.nodes, with_lora, positive, negative, latent)
    reference = ksample(comfy_host.nodes, by_hand, positive, negative, latent)
    assert relative_error(out, reference) < 1e-5
    assert relative_error(plain, reference) > 1e-3


@pytest.fixture(scope="module")
def controlnet_setup(comfy_host, tmp_path_factory):
    folder = tmp_path_factory.mktemp("controlnet")
    save_file(controlnet_state_dict(), str(folder / "sd21_layout_controlnet.safetensors"))
    comfy_host.folder_paths.add_model_folder_path("controlnet", str(folder))
    control_net = comfy_host.nodes.ControlNetLoader().load_controlnet("sd21_layout_controlnet.safetensors")[0]
    model = comfy_host.import_pack_module("nodes.adapter.patcher").model_from_checkpoint(
        sd21_layout_checkpoint(), "fp32"
    )
    conds = sd21_layout_conds(comfy_host.import_pack_module("nodes.adapter.family"), *sd21_layout_conditioning())
    return model, control_net, conds


def _with_control(
    comfy_host,
    setup,
    hints: torch.Tensor,
    strength: float,
    start: float = 0.0,
    end: float = 1.0,
    start_latent: torch.Tensor | None = None,
) -> torch.Tensor:
    """KSampler with the ControlNet applied; from ``start_latent`` without added noise when given."""
    model, control_net, (positive, negative) = setup
    positive, negative = comfy_host.nodes.ControlNetApplyAdvanced().apply_controlnet(
        positive, negative, control_net, hints, strength, start, end
    )[:2]
    latent = torch.zeros(FRAMES, 4, H, W) if start_latent is None else start_latent
    return ksample(
        comfy_host.nodes, model, positive, negative, {"samples": latent}, disable_noise=start_latent is not None
    )


def test_controlnet_through_stock_nodes(comfy_host, controlnet_setup, single_thread):
    model, _, (positive, negative) = controlnet_setup
    plain = ksample(comfy_host.nodes, model, positive, negative, {"samples": torch.zeros(FRAMES, 4, H, W)})
    full = _with_control(comfy_host, controlnet_setup, hint_images(1), 1.0)
    assert torch.isfinite(full).all() and relative_error(full, plain) > 1e-3
    assert torch.equal(_with_control(comfy_host, controlnet_setup, hint_images(1), 0.0), plain)
    weaker = _with_control(comfy_host, controlnet_setup, hint_images(1), 0.3)
    assert 0 < relative_error(weaker, plain) < relative_error(full, plain)
    late = _with_control(comfy_host, controlnet_setup, hint_images(1), 1.0, start=0.5)
    assert relative_error(late, plain) > 1e-4 and relative_error(late, full) > 1e-4
    per_frame = _with_control(comfy_host, controlnet_setup, hint_images(FRAMES), 1.0)
    assert relative_error(per_frame, full) > 1e-3


def test_controlnet_residuals_per_frame_of_each_video(comfy_host, controlnet_setup, single_thread):
    """Two videos in one batch: each gets the per-frame hints and the result it gets alone."""
    starts = torch.randn(2 * FRAMES, 4, H, W, generator=torch.Generator().manual_seed(12))
    hints = hint_images(FRAMES)
    both = _with_control(comfy_host, controlnet_setup, hints, 1.0, start_latent=starts)
    for video in range(2):
        frames = slice(video * FRAMES, (video + 1) * FRAMES)
        alone = _with_control(comfy_host, controlnet_setup, hints, 1.0, start_latent=starts[frames].clone())
        assert relative_error(both[frames], alone) < 1e-4
