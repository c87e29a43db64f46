"""Conditioning-image controls: noise augmentation and per-frame blending of the end picture's image tokens."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.image_controls import AUGMENTATION_SEED, augment, blend_frame_tokens, end_token_weights


def test_augmentation_is_the_wrappers_formula_with_a_fixed_seed():
    pixels = torch.rand(1, 64, 128, 3, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(AUGMENTATION_SEED))
    assert torch.equal(augment(pixels, 0.1), pixels + 0.1 * noise)
    assert torch.equal(augment(pixels, 0.1), augment(pixels, 0.1))
    assert augment(pixels, 0.0) is pixels


def test_token_weights():
    assert torch.equal(end_token_weights(4, 0.5, "constant"), torch.full((4,), 0.5))
    assert torch.allclose(end_token_weights(4, 0.6, "ramp"), torch.tensor([0.0, 0.2, 0.4, 0.6]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        end_token_weights(16, 1.5, "constant")
    with pytest.raises(ValueError, match="unknown token schedule"):
        end_token_weights(16, 0.5, "sideways")


def test_constant_blend_is_the_wrappers_image_embed_ratio():
    g = torch.Generator().manual_seed(3)
    start, end = torch.randn(2, 256, 48, generator=g), torch.randn(2, 256, 48, generator=g)
    ratio = 0.3  # the wrapper's image_embed_ratio: the start picture's share
    ours = blend_frame_tokens(start, end, end_token_weights(16, 1 - ratio, "constant"))
    assert torch.allclose(ours, start * ratio + end * (1 - ratio), atol=1e-6)


def test_ramp_blends_per_frame_token_group():
    g = torch.Generator().manual_seed(4)
    start, end = torch.randn(1, 256, 8, generator=g), torch.randn(1, 256, 8, generator=g)
    ours = blend_frame_tokens(start, end, end_token_weights(16, 1.0, "ramp"))
    assert torch.equal(ours[:, :16], start[:, :16])  # frame 0: the start picture's tokens only
    assert torch.allclose(ours[:, -16:], end[:, -16:])  # frame 15: the end picture's only
    assert torch.allclose(ours[:, 16 * 5 : 16 * 6], start[:, 80:96] * (1 - 1 / 3) + end[:, 80:96] / 3)
    with pytest.raises(ValueError, match="16 for each of 8 frames"):
        blend_frame_tokens(start, end, torch.zeros(8))
