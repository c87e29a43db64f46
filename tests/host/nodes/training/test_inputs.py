"""Bad input to the training nodes: clear errors when queued (widgets) or when run (what only the frames tell),
and no file outside the loras folder."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import pytest
import torch

from support.training_host import moving_ball

TRAIN = "DynamiCrafterTrainLoRA"


def queue_errors(comfy_host: Any, values: dict[str, Any]) -> str:
    """The host's queue-time errors of a Train LoRA node with these widget values (links left out)."""
    schema = comfy_host.nodes.NODE_CLASS_MAPPINGS[TRAIN].GET_SCHEMA()
    inputs = {s.id: s.default for s in schema.inputs if getattr(s, "default", None) is not None}
    inputs.update(values)
    prompt = {"1": {"class_type": TRAIN, "inputs": inputs}}
    _, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
    return "\n".join(f"{e['message']}: {e['details']}" for e in errors)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": 10**6}, "rank"),
        ({"learning_rate": math.nan}, "learning_rate is nan"),
        ({"learning_rate": math.inf}, "learning_rate is inf"),
        ({"lora_name": "../escape"}, "no '..'"),
        ({"lora_name": "a/../../escape"}, "no '..'"),
        ({"lora_name": "/etc/escape"}, "absolute"),
        ({"lora_name": "C:\\escape"}, "absolute"),
        ({"lora_name": " "}, "lora_name is empty"),
    ],
)
def test_bad_widgets_are_refused_when_queued(comfy_host, training_host, values, message):
    errors = queue_errors(comfy_host, values)
    assert message in errors, errors


def test_good_widgets_pass_when_queued(comfy_host, training_host):
    errors = queue_errors(comfy_host, {"lora_name": "dynamicrafter/my_motion"})
    assert "rank" not in errors and "lora_name" not in errors and "learning_rate" not in errors, errors


def test_a_video_too_short_for_the_stride_is_refused(training_host):
    validation = training_host.pack("nodes.adapter.validation")
    with pytest.raises(
        validation.InputError, match=r"video 1 has 20 frames, but a 16-frame clip at frame stride 2 needs 31"
    ):
        training_host.clips(moving_ball(20), frame_stride=2)


def test_a_wrong_number_of_captions_is_refused(training_host):
    validation = training_host.pack("nodes.adapter.validation")
    two_videos = torch.cat([moving_ball(16), moving_ball(16, seed=2)])
    with pytest.raises(validation.InputError, match="3 captions for 2 videos"):
        training_host.clips(two_videos, captions="a\nb\nc", frames_per_video=16)
    with pytest.raises(validation.InputError, match="do not split into videos of 10 frames"):
        training_host.clips(two_videos, frames_per_video=10)
    clips = training_host.clips(two_videos, captions="a\nb", frames_per_video=16)
    assert len(clips) == 2 and not torch.equal(clips.texts[0], clips.texts[1])
    one_for_all = training_host.clips(two_videos, captions="one caption", frames_per_video=16)
    assert torch.equal(one_for_all.texts[0], one_for_all.texts[1])


def test_clips_keep_whole_videos_and_the_fs_of_the_stride(training_host):
    clips = training_host.clips(moving_ball(40), frame_stride=2, fps=30.0, max_clips_per_video=0)
    assert len(clips) == 1 and clips.fs == [15]  # 40 frames hold one 31-frame window; fps 30 // stride 2
    assert clips.latents[0].shape[:2] == (4, 16) and clips.clip_frames[0].shape[0] == 16  # 512: any frame conditions
    more = training_host.clips(moving_ball(40), frame_stride=1, max_clips_per_video=0, previous=clips)
    assert len(more) == 3 and len(clips) == 1  # 40 frames: two 16-frame windows at stride 1, added to the first set


def test_a_name_escaping_the_loras_folder_writes_nothing(training_host, tmp_path):
    adapters = training_host.pack("nodes.training.adapters")
    output = training_host.host.folder_paths.get_output_directory()
    before = {p for p in training_host.loras.parent.rglob("*")}
    with pytest.raises(Exception, match="outside"):
        adapters.save_to_loras({"x.alpha": torch.tensor(1.0)}, "../../escape", 1)
    assert {p for p in training_host.loras.parent.rglob("*")} == before
    assert not list(training_host.loras.parent.parent.rglob("escape_1_steps_*")) and output
