"""Bad control values are refused when the prompt is queued, with a message that says what to change."""

from __future__ import annotations

import asyncio
import json
import math
import uuid

import pytest


def prompt_with(class_type: str, inputs: dict) -> dict:
    return {"1": {"class_type": class_type, "inputs": inputs}}


@pytest.mark.parametrize(
    "class_type, inputs, message",
    [
        ("DynamiCrafterSampler", {"image_cfg": math.nan}, "image_cfg is nan, not a number"),
        ("DynamiCrafterSampler", {"image_cfg": -1.5}, "image_cfg = -1.5 is below its minimum -1.0"),
        ("DynamiCrafterSampler", {"image_cfg": 31.0}, "image_cfg = 31.0 is above its maximum 30.0"),
        ("DynamiCrafterSampler", {"denoise": 1.5}, "denoise = 1.5 is above its maximum 1.0"),
        ("DynamiCrafterSampler", {"denoise": math.inf}, "denoise is inf, not a number"),
        ("DynamiCrafterScheduler", {"denoise": math.nan}, "denoise is nan, not a number"),
        ("DynamiCrafterImageGuider", {"image_cfg": math.nan}, "image_cfg is nan, not a number"),
        ("DynamiCrafterImageGuider", {"image_cfg": -1.0}, "image_cfg = -1.0 is below its minimum 0.0"),
        ("DynamiCrafterImageGuider", {"cfg": 0.5}, "cfg = 0.5 is below its minimum 1.0"),
        ("DynamiCrafterPinFrames", {"pin": "16"}, "pin: frame 16 is outside"),
        ("DynamiCrafterPinFrames", {"pin": "first"}, "not a frame"),
        ("DynamiCrafterPinFrames", {"pin": " , "}, "no frame"),
        ("DynamiCrafterPinFrames", {"pin": "8", "frames": 8}, "outside"),
        ("DynamiCrafterPinFrames", {"frames": 65}, "frames = 65 is above its maximum 64"),
        ("DynamiCrafterImageToVideo", {"noise_augmentation": math.nan}, "noise_augmentation is nan, not a number"),
        ("DynamiCrafterInterpolation", {"noise_augmentation": 2.0}, "noise_augmentation = 2.0 is above its maximum"),
        ("DynamiCrafterInterpolation", {"end_image_tokens": -0.1}, "end_image_tokens = -0.1 is below its minimum"),
        (
            "DynamiCrafterInterpolation",
            {"end_token_schedule": "sideways"},
            "end_token_schedule: 'sideways' not in ['constant', 'ramp']",
        ),
        (
            "DynamiCrafterKeyframeChain",
            {"end_token_schedule": "sideways"},
            "end_token_schedule: 'sideways' not in",
        ),
        ("DynamiCrafterKeyframeChain", {"end_image_tokens": math.nan}, "end_image_tokens is nan, not a number"),
        ("DynamiCrafterKeyframeChain", {"width": 8192}, "width = 8192 is above its maximum 4096"),
    ],
)
def test_bad_control_values_are_refused_at_queue_time(pack, comfy_host, class_type, inputs, message):
    node = comfy_host.nodes.NODE_CLASS_MAPPINGS[class_type]
    values = {
        "image_cfg": -1.0,
        "denoise": 1.0,
        "cfg": 7.5,
        "guidance_rescale": -1.0,
        "pin": "0",
        "frames": 16,
        "width": 512,
        "height": 320,
        **inputs,
    }
    accepted = set(node.INPUT_TYPES()["required"]) | set(node.INPUT_TYPES().get("optional", {}))
    prompt = prompt_with(class_type, {k: v for k, v in values.items() if k in accepted})
    ok, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
    assert not ok and message in json.dumps(errors)
