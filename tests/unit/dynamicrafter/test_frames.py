"""Concat-latent layouts for image-to-video, interpolation and loop (the original's, as recorded in tests/data/parity_interp/README.md)."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.frames import concat_latent, fold_frames, frames_to_keep, parse_frame_list, unfold_frames


def test_i2v_repeats_the_latent_on_every_frame():
    z = torch.randn(2, 4, 5, 6)
    out = concat_latent(z, 16)
    assert out.shape == (2, 4, 16, 5, 6)
    assert all(torch.equal(out[:, :, t], z) for t in range(16))


def test_interp_puts_keyframes_at_both_ends_and_zeros_between():
    a, b = torch.randn(1, 4, 5, 6), torch.randn(1, 4, 5, 6)
    out = concat_latent(a, 16, "interp", b)
    assert torch.equal(out[:, :, 0], a) and torch.equal(out[:, :, 15], b)
    assert out[:, :, 1:15].abs().sum() == 0


def test_loop_uses_the_start_at_both_ends_and_drops_the_last_frame():
    a = torch.randn(1, 4, 5, 6)
    out = concat_latent(a, 16, "loop")
    assert torch.equal(out[:, :, 0], a) and torch.equal(out[:, :, 15], a)
    assert frames_to_keep(16, "loop") == 15 and frames_to_keep(16, "interp") == 16


def test_interp_errors_are_clear():
    a = torch.randn(1, 4, 5, 6)
    with pytest.raises(ValueError, match="end image"):
        concat_latent(a, 16, "interp")
    with pytest.raises(ValueError, match="same size"):
        concat_latent(a, 16, "interp", torch.randn(1, 4, 5, 7))
    with pytest.raises(ValueError, match="at least 2 frames"):
        concat_latent(a, 1, "loop")


def test_folded_frames_put_the_frame_index_fastest_and_unfold_back():
    video = torch.randn(2, 4, 3, 5, 6)  # [B, C, T, h, w]
    batch = fold_frames(video)
    assert batch.shape == (6, 4, 5, 6)
    assert torch.equal(batch[1], video[0, :, 1]) and torch.equal(batch[3], video[1, :, 0])
    assert torch.equal(unfold_frames(batch, 3), video)


@pytest.mark.parametrize(
    "text, frames", [("0", [0]), ("0, -1", [0, 15]), ("0-3, 15", [0, 1, 2, 3, 15]), ("2,2", [2]), ("-2", [14])]
)
def test_frame_lists(text, frames):
    assert parse_frame_list(text, 16) == frames


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no frame"),
        (" , ", "no frame"),
        ("first", "not a frame"),
        ("16", "outside"),
        ("-17", "outside"),
        ("5-2", "backwards"),
        ("1-2-3", "not a frame"),
        ("1.5", "not a frame"),
    ],
)
def test_bad_frame_lists_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_frame_list(text, 16)
