"""The keyframe chain node in the real host on tiny networks (CLIP vision replaced by a stand-in, text
conditioning given directly): one segment per keyframe pair, joined once per keyframe; cancel between
segments; clear errors."""

from __future__ import annotations

import pytest
import torch

from support.long_video_parts import (
    FRAMES,
    HEIGHT,
    WIDTH,
    RecordingVAE,
    SampleRecorder,
    conditioning,
    pictures,
)


def test_keyframe_chain_joins_segments_once_per_keyframe(pack, tiny, fake_clip, monkeypatch, single_thread):
    import comfy.utils

    recorder = SampleRecorder(pack, monkeypatch)
    vae = RecordingVAE(tiny["vae"])
    keyframes = pictures(3)
    progress: list[tuple[int, int]] = []
    monkeypatch.setattr(
        comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: progress.append((value, total))
    )
    line = torch.full((1, 77, 48), 0.25)
    clip = type(
        "FakeCLIP",
        (),
        {"tokenize": lambda self, text: text, "encode_from_tokens_scheduled": lambda self, tokens: conditioning(line)},
    )()
    with torch.no_grad():
        frames = (
            pack["long_video"]
            .DynamiCrafterKeyframeChain.execute(
                tiny["512_interp"],
                tiny["positive"],
                tiny["negative"],
                vae,
                object(),
                keyframes,
                WIDTH,
                HEIGHT,
                FRAMES,
                0,
                11,
                2,
                7.5,
                1.0,
                -1.0,
                "crop",
                clip=clip,
                segment_prompts="\na kite rising",
            )
            .result[0]
        )
    assert frames.shape == (2 * (FRAMES - 1) + 1, HEIGHT, WIDTH, 3)
    # segment i interpolates keyframe i -> i+1: the VAE saw (k0, k1), (k1, k2); CLIP saw each segment's start
    order = [0, 1, 1, 2]
    assert all(torch.equal(seen, keyframes[i : i + 1]) for seen, i in zip(vae.encoded, order, strict=True))
    assert all(torch.equal(seen, keyframes[i : i + 1]) for seen, i in zip(fake_clip.seen, [0, 1], strict=True))
    # an empty line uses the positive input; a text line its own encoding
    assert recorder.positives[0][0][0] is tiny["positive"][0][0]
    assert torch.equal(recorder.positives[1][0][0], line)
    # one progress bar across both segments, ending full
    assert progress[-1] == (4, 4) and [v for v, _ in progress] == sorted(v for v, _ in progress)


def test_keyframe_chain_honours_cancel_between_segments(pack, tiny, fake_clip, monkeypatch, single_thread):
    import comfy.model_management as mm
    import comfy.utils

    recorder = SampleRecorder(pack, monkeypatch)

    def hook(value, total, preview, node_id=None):
        if value == 1:  # the first segment's last step (steps = 1)
            mm.interrupt_current_processing(True)

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    with pytest.raises(mm.InterruptProcessingException), torch.no_grad():
        pack["long_video"].DynamiCrafterKeyframeChain.execute(
            tiny["512_interp"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            pictures(3),
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            11,
            1,
            7.5,
            1.0,
            -1.0,
            "crop",
        )
    assert len(recorder.positives) == 1 and not mm.processing_interrupted()


@pytest.mark.parametrize(
    "case, message",
    [
        ("one keyframe", "at least 2 keyframes"),
        ("not interp", "512_interp checkpoint"),
        ("prompt lines", "segment_prompts has 1 lines but there are 2 segments"),
        ("no clip", "needs the 'clip' input"),
    ],
)
def test_keyframe_chain_errors_are_clear(pack, tiny, case, message):
    kwargs = {"model": tiny["512_interp"], "keyframes": pictures(3), "segment_prompts": ""}
    if case == "one keyframe":
        kwargs["keyframes"] = pictures(1)
    elif case == "not interp":
        kwargs["model"] = tiny["512"]
    elif case == "prompt lines":
        kwargs["segment_prompts"] = "only one line"
    else:
        kwargs["segment_prompts"] = "a\nb"
    with pytest.raises(ValueError, match=message):
        pack["long_video"].DynamiCrafterKeyframeChain.execute(
            kwargs["model"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            kwargs["keyframes"],
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            1,
            1,
            7.5,
            1.0,
            -1.0,
            "crop",
            segment_prompts=kwargs["segment_prompts"],
        )


def test_keyframes_of_different_sizes_are_refused(pack):
    with pytest.raises(ValueError, match="keyframes differ in size"):
        pack["long_video"].stack_keyframes([pictures(1), torch.zeros(1, 32, 32, 3)])
