"""Training windows, caption counts, adapter targets and the objective's draws (pure PyTorch)."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.config import VARIANTS
from dynamicrafter.training.clips import captions_for, clip_fs, clip_starts, span, video_windows
from dynamicrafter.training.objective import ClipBatch, ObjectiveSettings, draw
from dynamicrafter.training.targets import TARGET_CHOICES, is_target, parts


def test_windows_follow_webvid():
    assert span(16, 6) == 91  # frame_stride * (video_length - 1) + 1
    assert clip_starts(91, 16, 6) == [0] and clip_starts(90, 16, 6) == []
    assert clip_starts(40, 16, 1) == [0, 16]
    (window,) = video_windows(0, 40, 16, 2, "fps", 30.0)
    assert window.frames == tuple(range(0, 31, 2)) and window.fs == 15  # fps_ori // frame_stride
    assert video_windows(0, 40, 16, 2, "frame_stride", 30.0)[0].fs == 2
    assert len(video_windows(0, 100, 16, 1, "fps", 24.0, max_clips=2)) == 2


def test_short_videos_and_bad_rates_are_refused():
    with pytest.raises(ValueError, match="video 2 has 15 frames, but a 16-frame clip at frame stride 1 needs 16"):
        video_windows(1, 15, 16, 1, "fps", 24.0)
    with pytest.raises(ValueError, match="at least 1"):
        clip_starts(40, 16, 0)
    with pytest.raises(ValueError, match="frame rate"):
        clip_fs("fps", 1, float("nan"))


def test_captions_one_per_video_or_one_for_all():
    assert captions_for(["a"], 3) == ["a", "a", "a"]
    assert captions_for(["a", "b"], 2) == ["a", "b"]
    with pytest.raises(ValueError, match="3 captions for 2 videos"):
        captions_for(["a", "b", "c"], 2)


def test_targets():
    linear, conv = torch.nn.Linear(4, 4), torch.nn.Conv2d(4, 4, 3)
    attention = "input_blocks.1.1.transformer_blocks.0.attn2.to_k_ip"
    assert is_target(attention, linear, parts("attention"))
    assert not is_target("input_blocks.1.1.transformer_blocks.0.ff.net.2", linear, parts("attention"))
    assert not is_target("input_blocks.1.0.in_layers.2", conv, parts("attention+resampler"))
    assert is_target("input_blocks.1.0.in_layers.2", conv, parts("attention+conv"))
    assert is_target("image_proj_model.layers.0.0.to_q", linear, parts("attention+resampler"))
    assert not is_target("image_proj_model.layers.0.0.to_q", linear, parts("attention"))
    assert not is_target("x.norm", torch.nn.LayerNorm(4), set(TARGET_CHOICES[-1].split("+")))
    with pytest.raises(ValueError, match="unknown adapter targets"):
        parts("everything")


def _batch(videos: int = 3) -> ClipBatch:
    return ClipBatch(
        latents=torch.zeros(videos, 4, 16, 2, 2),
        text=torch.zeros(videos, 77, 8),
        empty_text=torch.zeros(1, 77, 8),
        clip_frames=torch.zeros(videos, 16, 257, 4),
        clip_blank=torch.zeros(1, 257, 4),
        fs=torch.full((videos,), 24),
    )


@pytest.mark.parametrize("name", ["256", "512", "512_interp"])
def test_draws_are_seeded_and_in_range(name):
    settings = ObjectiveSettings.for_variant(VARIANTS[name])
    a = draw(_batch(), settings, torch.Generator().manual_seed(1))
    b = draw(_batch(), settings, torch.Generator().manual_seed(1))
    assert torch.equal(a.timesteps, b.timesteps) and torch.equal(a.noise, b.noise) and a.cond_frame == b.cond_frame
    assert a.timesteps.min() >= 0 and a.timesteps.max() < 1000 and ((a.dropout >= 0) & (a.dropout < 1)).all()
    frames = {draw(_batch(), settings, torch.Generator().manual_seed(s)).cond_frame for s in range(20)}
    assert (len(frames) > 3) if settings.rand_cond_frame else frames == {0}
