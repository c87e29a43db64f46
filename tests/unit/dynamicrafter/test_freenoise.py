"""FreeNoise's pieces (dynamicrafter/freenoise.py) on their own and inside the UNet."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter import freenoise
from dynamicrafter.attention import sdpa_attention
from dynamicrafter.transformer import split_context
from support.parity_data import FixtureSet
from support.reference_data import PARITY_SMALL_512


def test_weights_rise_to_the_middle_and_fall_back():
    for length in (2, 5, 16):
        w = freenoise.window_weights(length)
        assert len(w) == length and w == w[::-1] and w[0] == 1
        assert max(w) == (length + 1) // 2 and all(b - a in (0, 1) for a, b in zip(w, w[1 : length // 2 + 1]))


@pytest.mark.parametrize("frames", [16, 17, 30, 32, 64, 65])
def test_windows_cover_every_frame_and_start_every_stride(frames):
    spans = freenoise.window_spans(frames, 16, 4)
    covered = set()
    for start, end in spans:
        assert end - start == 16 and 0 <= start and end <= frames
        covered.update(range(start, end))
    assert covered == set(range(frames))
    regular = [s for s, _ in spans if s % 4 == 0]
    assert regular == list(range(0, frames - 15, 4))
    assert len(spans) - len(regular) == (1 if (frames - 16) % 4 else 0)


def test_sixteen_frames_is_one_window_and_shorter_videos_are_refused():
    assert freenoise.FreeNoise().spans(16) is None
    with pytest.raises(ValueError, match="longer than the video"):
        freenoise.FreeNoise().spans(12)


@pytest.mark.parametrize(
    ("settings", "frames", "words"),
    [
        (freenoise.FreeNoise(16, 0), 64, "stride is 0"),
        (freenoise.FreeNoise(16, 17), 64, "at most the window"),
        (freenoise.FreeNoise(24, 4), 64, "window is 24"),
        (freenoise.FreeNoise(), 100_000, "more than one FreeNoise pass"),
        (freenoise.FreeNoise(), 8, "longer than the video"),
    ],
)
def test_bad_settings_are_named(settings, frames, words):
    problems = settings.problems(frames)
    assert len(problems) == 1 and words in problems[0]
    with pytest.raises(ValueError, match=words):
        settings.check(frames)


def test_rescheduling_shuffles_each_block_from_the_window_before():
    noise = torch.randn(2, 4, 26, 3, 5)
    ours = freenoise.reschedule_noise(noise, 16, 4, seed=7)
    assert torch.equal(ours[:, :, :16], noise[:, :, :16]) and not torch.equal(ours, noise)
    for start in range(16, 26, 4):  # each block: its frames are a permutation of frames start-16 .. (as rescheduled)
        count = min(4, 26 - start)
        block = ours[:, :, start : start + count]
        source = ours[:, :, start - 16 : start - 16 + count]
        matched = sorted(
            next(j for j in range(count) if torch.equal(block[:, :, i], source[:, :, j])) for i in range(count)
        )
        assert matched == list(range(count))
    assert torch.equal(freenoise.reschedule_noise(noise, 16, 4, seed=7), ours)


def test_fused_image_attention_reads_each_windows_position():
    torch.manual_seed(0)
    videos, frames, positions, heads, inner = 2, 20, 16, 2, 8
    q = torch.randn(videos * frames, 5, inner)
    k, v = torch.randn(videos * positions, 3, inner), torch.randn(videos * positions, 3, inner)
    spans = freenoise.window_spans(frames, 16, 4)  # windows 0-15 and 4-19
    out = freenoise.windowed_image_attention(q, k, v, heads, sdpa_attention, spans)

    def plain(frame: int, position: int, video: int) -> torch.Tensor:
        row, tok = video * frames + frame, video * positions + position
        return sdpa_attention(q[row : row + 1], k[tok : tok + 1], v[tok : tok + 1], heads)[0]

    for video in range(videos):
        # frame 2 is only in the first window (position 2), frame 18 only in the second (position 14)
        assert torch.allclose(out[video * frames + 2], plain(2, 2, video), atol=1e-6)
        assert torch.allclose(out[video * frames + 18], plain(18, 14, video), atol=1e-6)
        # frame 9: position 9 (weight 7) in the first window, position 5 (weight 6) in the second
        fused = (7 * plain(9, 9, video) + 6 * plain(9, 5, video)) / 13
        assert torch.allclose(out[video * frames + 9], fused, atol=1e-6)


def test_the_image_tokens_must_be_the_resamplers_layout():
    text = torch.randn(1, 77, 8)
    ctx = split_context(text, 32, torch.randn(1, 256, 8), 16, window=16)
    assert ctx.image.shape == (16, 16, 8)
    with pytest.raises(ValueError, match="FreeNoise needs 16 image tokens"):
        split_context(text, 32, torch.randn(1, 100, 8), 16, window=16)


@pytest.fixture(scope="module")
def network():
    unet, _ = FixtureSet(PARITY_SMALL_512).networks()
    io = FixtureSet(PARITY_SMALL_512).tensors("unet_io")
    return unet, io


def test_sixteen_frames_in_freenoise_mode_are_bit_identical_to_the_plain_model(network, single_thread):
    unet, io = network
    with torch.no_grad():
        plain = unet(io["x"], io["timesteps"], io["context"], io["fs"])
        options = {freenoise.OPTION: freenoise.FreeNoise()}
        ours = unet(io["x"], io["timesteps"], io["context"], io["fs"], transformer_options=options)
    assert torch.equal(ours, plain)
    assert freenoise.WINDOWS not in options  # nothing is left for the next call


def test_frames_far_apart_interact_only_through_windows(network, single_thread):
    """With FreeNoise, changing the last frame's input moves frame 0 less than without (windows are local)."""
    unet, io = network
    x = torch.cat([io["x"], io["x"].flip(2), io["x"]], dim=2)[:1, :, :40]
    changed = x.clone()
    changed[:, :, -1] += 1.0
    options = {freenoise.OPTION: freenoise.FreeNoise()}
    with torch.no_grad():
        args = (io["timesteps"][:1], io["context"][:1], io["fs"][:1])
        a, b = (
            unet(x, *args, transformer_options=dict(options)),
            unet(changed, *args, transformer_options=dict(options)),
        )
        pa, pb = unet(x, *args), unet(changed, *args)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() < (pa[:, :, 0] - pb[:, :, 0]).abs().max()
