"""A small DynamiCrafter with SD 2.1's widths (320 channels, 1024-wide text context) and a matching ControlNet.

The host detects a ControlNet's structure from its tensors and accepts it only when its widths are
SD 2.x's (320 base channels, 1024 context), so the test network keeps those widths and shrinks
depth instead: one resolution level, one ResBlock per level.
"""

from __future__ import annotations

import torch

from dynamicrafter.checkpoint import DynamiCrafterCheckpoint, checkpoint_from_state_dict
from dynamicrafter.config import ResamplerConfig, UNetConfig
from dynamicrafter.resampler import Resampler
from dynamicrafter.unet import DynamiCrafterUNet
from support.tiny_checkpoints import random_state

FRAMES, H, W = 4, 8, 8
"""Few frames at a small size: the 320-channel layers are slow on CPU."""
SD21_LAYOUT_UNET = UNetConfig(channel_mult=(1,), num_res_blocks=1, attention_resolutions=(1,))
SD21_LAYOUT_RESAMPLER = ResamplerConfig(dim=64, depth=1, heads=2, dim_head=32, embedding_dim=40)


def sd21_layout_checkpoint() -> DynamiCrafterCheckpoint:
    sd = {
        f"model.diffusion_model.{k}": v for k, v in random_state(DynamiCrafterUNet(SD21_LAYOUT_UNET), 3, 0.05).items()
    }
    sd.update({f"image_proj_model.{k}": v for k, v in random_state(Resampler(SD21_LAYOUT_RESAMPLER), 4, 0.05).items()})
    return checkpoint_from_state_dict("dynamicrafter_512_sd21_layout.safetensors", sd, "512")


def sd21_layout_conditioning(seed: int = 5) -> tuple[torch.Tensor, ...]:
    """(text, uncond text, CLIP tokens, uncond CLIP tokens, image latent) with SD 2.x's text width."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, 77, 1024, generator=g),
        torch.randn(1, 77, 1024, generator=g),
        torch.randn(1, 257, 40, generator=g),
        torch.randn(1, 257, 40, generator=g),
        torch.randn(1, 4, H, W, generator=g),
    )


def sd21_layout_conds(model_module, text, uc_text, clip, uc_clip, image_latent, fs: int = 24):
    """Positive/negative CONDITIONING for FRAMES frames, as the pack's image-to-video node builds them."""
    shared = {
        model_module.COND_CONCAT: image_latent.repeat(FRAMES, 1, 1, 1),
        model_module.COND_FRAMES: FRAMES,
        model_module.COND_FS: fs,
        model_module.COND_TASK: "i2v",
    }
    return (
        [[text, {**shared, model_module.COND_IMAGE_TOKENS: clip}]],
        [[uc_text, {**shared, model_module.COND_IMAGE_TOKENS: uc_clip}]],
    )


def controlnet(hint_channels: int = 3, context_dim: int = 1024, device: str | None = None) -> torch.nn.Module:
    """The host's ControlNet network at the test UNet's structure (one level, one ResBlock), uninitialised."""
    import comfy.cldm.cldm
    import comfy.ops

    return comfy.cldm.cldm.ControlNet(
        image_size=32,
        in_channels=4,
        model_channels=320,
        hint_channels=hint_channels,
        num_res_blocks=1,
        channel_mult=(1,),
        num_head_channels=64,
        use_spatial_transformer=True,
        transformer_depth=[1],
        transformer_depth_middle=1,
        context_dim=context_dim,
        use_linear_in_transformer=True,
        legacy=False,
        operations=comfy.ops.disable_weight_init,
        dtype=torch.float32,
        device=device,
    )


def controlnet_state_dict(
    seed: int = 6, hint_channels: int = 3, prefix: str = "control_model."
) -> dict[str, torch.Tensor]:
    """A random ControlNet in the original (lllyasviel) key layout with the network's SD 2.1 widths.

    Its zero convolutions are random rather than zero, so that it changes the result, and its hint block's
    convolutions pass the picture on at unit gain (weights of std 1/sqrt(fan-in)): at the small scale of the
    rest, eight layers would shrink the hint to ~1e-4 of their biases and what the picture shows would hardly
    matter. ``hint_channels=1`` and no ``prefix``: ToonCrafter's sketch encoder as its file holds it.
    """
    state = random_state(controlnet(hint_channels), seed, 0.02)
    for key, value in state.items():
        if key.startswith("input_hint_block.") and key.endswith(".weight"):
            state[key] = value / (0.02 * value[0].numel() ** 0.5)
    return {f"{prefix}{k}": v for k, v in state.items()}


def hint_images(count: int, seed: int = 8) -> torch.Tensor:
    """``count`` hint pictures (IMAGE, [N, H, W, 3] in [0, 1]) at the latent's pixel size."""
    return torch.rand(count, H * 8, W * 8, 3, generator=torch.Generator().manual_seed(seed))
