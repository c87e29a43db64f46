"""Segment planning, joining and blending of long videos (pure torch)."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.chain import (
    ContinuationPlan,
    blend_overlap,
    chain_length,
    crossfade_weights,
    join_segments,
    join_with_overlap,
    keyframe_segments,
    match_color_stats,
    segment_seed,
    segments_showing,
)


def _clip(value: float, frames: int = 16) -> torch.Tensor:
    """An IMAGE clip [T, 2, 3, 3] whose frame t is the constant value + t."""
    return (value + torch.arange(frames, dtype=torch.float32)).view(-1, 1, 1, 1).expand(-1, 2, 3, 3).contiguous()


@pytest.mark.parametrize("keyframes, frames, expected", [(2, 16, 16), (3, 16, 31), (5, 16, 61), (4, 2, 4)])
def test_chain_length_counts_each_keyframe_once(keyframes, frames, expected):
    assert chain_length(keyframes, frames) == expected
    if frames == 16:
        assert expected == 15 * (keyframes - 1) + 1


def test_keyframe_segments_pair_neighbours():
    assert keyframe_segments(4) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("keyframes", [0, 1])
def test_fewer_than_two_keyframes_is_a_clear_error(keyframes):
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        keyframe_segments(keyframes)


def test_join_segments_drops_the_repeated_keyframe():
    # segment i runs from keyframe i (value 100*i) to keyframe i+1 (value 100*(i+1))
    segments = [torch.linspace(100.0 * i, 100.0 * (i + 1), 16).view(-1, 1, 1, 1).expand(-1, 4, 4, 3) for i in range(3)]
    video = join_segments(segments)
    assert video.shape == (chain_length(4, 16), 4, 4, 3)
    values = video[:, 0, 0, 0]
    assert torch.all(values[1:] > values[:-1])  # strictly moving: no duplicated (paused) frame at a join
    for i in range(4):  # each keyframe once, at 15*i
        assert float(values[15 * i]) == pytest.approx(100.0 * i)
    assert int((values == 100.0).sum()) == 1 and int((values == 200.0).sum()) == 1


@pytest.mark.parametrize("keyframes, frames", [(2, 16), (4, 16), (3, 2), (3, 5)])
def test_segments_showing_names_every_clip_frame_the_joined_video_shows(keyframes, frames):
    """Segment clips whose frames are (segment, frame) labels, joined: each chained frame's label is where
    segments_showing maps it, and a keyframe join (the same picture in two clips) maps to both clips."""
    clips = [torch.tensor([[s, t] for t in range(frames)], dtype=torch.float32) for s in range(keyframes - 1)]
    video = join_segments(clips)
    for frame in range(video.shape[0]):
        shown = segments_showing(frame, keyframes, frames)
        assert tuple(video[frame].int().tolist()) == shown[0]
        inner_keyframe = frame % (frames - 1) == 0 and 0 < frame < video.shape[0] - 1
        assert len(shown) == (2 if inner_keyframe else 1)
        if inner_keyframe:  # the next segment starts on the picture the previous one ends on
            assert shown[1] == (shown[0][0] + 1, 0) and shown[0][1] == frames - 1
    assert segments_showing(16, 3, 16) == [(1, 1)]
    assert segments_showing(15, 3, 16) == [(0, 15), (1, 0)]
    with pytest.raises(ValueError, match="outside the chain's frames 0-30"):
        segments_showing(31, 3, 16)


def test_join_segments_refuses_frames_of_another_size():
    with pytest.raises(ValueError, match="shape"):
        join_segments([torch.zeros(16, 4, 4, 3), torch.zeros(16, 4, 8, 3)])


def test_segment_seeds_never_share_a_stream():
    seeds = [segment_seed(7, i) for i in range(5)]
    streams = seeds + [s + 1 for s in seeds]  # start noise and step noise of each clip
    assert seeds[0] == 7 and len(set(streams)) == len(streams)
    assert segment_seed(2**64 - 1, 1) == 1  # stays inside the seed range


@pytest.mark.parametrize(
    "total, overlap, clips", [(16, 4, 1), (10, 4, 1), (17, 4, 2), (40, 4, 3), (41, 4, 4), (46, 1, 3), (100, 8, 12)]
)
def test_plan_makes_at_least_the_requested_frames_with_the_fewest_clips(total, overlap, clips):
    plan = ContinuationPlan(total, 16, overlap)
    assert plan.clips == clips
    assert plan.untrimmed >= total
    assert plan.clips == 1 or plan.untrimmed - plan.stride < total  # one clip fewer would not be enough
    assert plan.condition_index == 16 - overlap
    assert plan.start(plan.clips - 1) < total


@pytest.mark.parametrize("overlap", [0, 9, 16])
def test_plan_refuses_overlaps_outside_half_a_clip(overlap):
    with pytest.raises(ValueError, match="overlap must be between 1 and 8"):
        ContinuationPlan(40, 16, overlap)


def test_crossfade_weights_rise_linearly_strictly_inside_0_and_1():
    assert crossfade_weights(1).tolist() == [0.5]
    assert torch.allclose(crossfade_weights(4), torch.tensor([0.2, 0.4, 0.6, 0.8]))
    with pytest.raises(ValueError):
        crossfade_weights(0)


def test_blend_overlap_is_the_linear_mix_over_the_shared_frames():
    a, b, n = _clip(0.0), _clip(1000.0), 4
    video = blend_overlap(a, b, n)
    assert video.shape[0] == 16 + 16 - n
    assert torch.equal(video[: 16 - n], a[: 16 - n])
    assert torch.equal(video[16:], b[n:])
    for j in range(n):
        w = (j + 1) / (n + 1)
        expected = (1 - w) * a[16 - n + j] + w * b[j]
        assert torch.allclose(video[16 - n + j], expected, rtol=0, atol=1e-4), j
    # the seam is gradual: no frame-to-frame jump inside the overlap larger than the jump into it
    steps = video[:, 0, 0, 0].diff()[16 - n - 1 : 16]
    assert float(steps.max() - steps.min()) <= 1000 / (n + 1) + 2


def test_join_with_overlap_cuts_to_exactly_the_requested_total():
    plan = ContinuationPlan(41, 16, 4)
    clips = [_clip(1000.0 * k) for k in range(plan.clips)]
    video = join_with_overlap(clips, plan.overlap, plan.total)
    assert video.shape[0] == 41
    for k in range(1, plan.clips):  # every join is the mix of clip k-1 (from condition_index) and clip k
        start = plan.start(k)
        for j in range(plan.overlap):
            w = (j + 1) / (plan.overlap + 1)
            expected = (1 - w) * clips[k - 1][plan.condition_index + j] + w * clips[k][j]
            if start + j < 41:
                assert torch.allclose(video[start + j], expected, atol=1e-3)
    with pytest.raises(ValueError, match="fewer than"):
        join_with_overlap(clips[:1], 4, 17)


def test_match_color_stats_moves_each_channel_to_the_reference():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(1, 8, 8, 3, generator=g) * 0.5 + 0.25
    image = (torch.rand(1, 8, 8, 3, generator=g) * 0.2 + 0.7).clamp(0, 1)
    out = match_color_stats(image, reference)
    assert torch.allclose(out.mean((0, 1, 2)), reference.mean((0, 1, 2)), atol=1e-4)
    assert torch.allclose(out.std((0, 1, 2)), reference.std((0, 1, 2)), atol=1e-4)
    assert not torch.allclose(image.mean((0, 1, 2)), reference.mean((0, 1, 2)), atol=0.05)
