"""The long image-to-video node in the real host on tiny networks (CLIP vision replaced by a stand-in): blended
joins and the exact length, short videos, tokens that follow the clip, return-to-source; then one graph that
runs the long-video and keyframe-chain nodes through the real loader and encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dynamicrafter.chain import ContinuationPlan, crossfade_weights
from support.long_video_parts import (
    FRAMES,
    HEIGHT,
    WIDTH,
    RecordingVAE,
    SampleRecorder,
    pictures,
    settings,
)
from support.reference_data import manifest_path


def test_long_video_blends_each_join_and_keeps_the_exact_length(pack, tiny, fake_clip, monkeypatch, single_thread):
    recorder = SampleRecorder(pack, monkeypatch)
    vae = RecordingVAE(tiny["vae"])
    source = pictures(1, seed=4)
    plan = ContinuationPlan(total=30, clip_frames=FRAMES, overlap=4)
    long_video = pack["long_video"]
    with torch.no_grad():
        result = long_video.generate_long_video(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            vae,
            object(),
            source,
            plan,
            WIDTH,
            HEIGHT,
            0,
            "crop",
            settings(pack),
            long_video.MODE_CONTINUE,
            anchor_tokens=True,
            match_colors=False,
        )
    video, clips = result.video, result.clips
    assert plan.clips == 3 and video.shape == (30, HEIGHT, WIDTH, 3)
    weights = crossfade_weights(plan.overlap)
    for k in range(1, plan.clips):
        # clip k starts from the frame where the overlap with clip k-1 begins (what the VAE encoded)
        start_frame = clips[k - 1][plan.condition_index : plan.condition_index + 1]
        assert torch.equal(result.starts[k], start_frame) and torch.equal(vae.encoded[k], start_frame)
        at = plan.start(k)
        for j, w in enumerate(weights.tolist()):
            if at + j < plan.total:
                expected = (1 - w) * clips[k - 1][plan.condition_index + j] + w * clips[k][j]
                assert torch.allclose(video[at + j], expected, rtol=0, atol=1e-6), (k, j)
        # the frames just outside the overlap are the clips' own
        assert torch.equal(video[at - 1], clips[k - 1][plan.condition_index - 1])
        if at + plan.overlap < plan.total:
            assert torch.equal(video[at + plan.overlap], clips[k][plan.overlap])
        # the blend is a real mix: the two clips differ there, and the joined frame is neither
        assert not torch.allclose(clips[k - 1][plan.condition_index], clips[k][0], atol=1e-3)
        # re-anchored: every continuation keeps the SOURCE picture's image tokens
        assert torch.equal(recorder.tokens(pack, k), recorder.tokens(pack, 0))
        assert not torch.equal(fake_clip.tokens(None, start_frame), recorder.tokens(pack, 0))
    assert torch.equal(video[: plan.start(1)], clips[0][: plan.start(1)])


def test_long_video_node_cuts_short_videos_and_unanchored_tokens_follow_the_clip(
    pack, tiny, fake_clip, monkeypatch, single_thread
):
    recorder = SampleRecorder(pack, monkeypatch)
    node = pack["long_video"].DynamiCrafterLongVideo
    with torch.no_grad():
        short = node.execute(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            pictures(1),
            5,
            4,
            pack["long_video"].MODE_CONTINUE,
            True,
            False,
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            1,
            1,
            7.5,
            0.0,
            -1.0,
            "crop",
        ).result[0]
        assert short.shape[0] == 5 and len(recorder.positives) == 1
        recorder.positives.clear()
        longer = node.execute(
            tiny["512"],
            tiny["positive"],
            tiny["negative"],
            tiny["vae"],
            object(),
            pictures(1),
            17,
            1,
            pack["long_video"].MODE_CONTINUE,
            False,
            True,
            WIDTH,
            HEIGHT,
            FRAMES,
            0,
            1,
            1,
            7.5,
            0.0,
            -1.0,
            "crop",
        ).result[0]
    assert longer.shape[0] == 17 and len(recorder.positives) == 2
    assert not torch.equal(recorder.tokens(pack, 1), recorder.tokens(pack, 0))


def test_return_to_source_mode_ends_every_clip_on_the_source(pack, tiny, fake_clip, single_thread):
    vae = RecordingVAE(tiny["vae"])
    long_video = pack["long_video"]
    source = pictures(1, seed=6)
    plan = ContinuationPlan(total=20, clip_frames=FRAMES, overlap=4)

    def run(model):
        return long_video.generate_long_video(
            model,
            tiny["positive"],
            tiny["negative"],
            vae,
            object(),
            source,
            plan,
            WIDTH,
            HEIGHT,
            0,
            "crop",
            settings(pack, steps=1),
            long_video.MODE_RETURN,
            True,
            False,
        )

    with pytest.raises(ValueError, match="512_interp checkpoint"):
        run(tiny["512"])
    with torch.no_grad():
        result = run(tiny["512_interp"])
    assert result.video.shape[0] == 20
    # clip 0 is a loop of the source (encoded once); clip 1 goes from its start frame back to the source
    assert torch.equal(vae.encoded[0], source)
    assert torch.equal(vae.encoded[1], result.starts[1]) and torch.equal(vae.encoded[2], source)


# ------------------------------------------------------------------------- one graph, real encoders


@pytest.fixture(scope="module")
def interp_file(comfy_host, tmp_path_factory):
    from support.host_checkpoints import write_host_checkpoint

    root = tmp_path_factory.mktemp("long-video-models")
    write_host_checkpoint(root / "dynamicrafter_512_interp_v1.ckpt", "512_interp", manifest_path("512"), "ckpt")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(root), is_default=True)
    picture = np.zeros((90, 160, 3), dtype=np.uint8)
    picture[:, :80] = (220, 120, 40)
    picture[30:60, 100:140] = (40, 90, 230)
    Image.fromarray(picture).save(Path(comfy_host.folder_paths.get_input_directory()) / "dc_long.png")
    return "dynamicrafter_512_interp_v1.ckpt"


def test_graph_runs_both_nodes_with_the_real_loader(comfy_host, pack, interp_file):
    sampling = {"seed": 1, "steps": 1, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0}
    shared_inputs = {
        "positive": ["2", 0],
        "negative": ["3", 0],
        "vae": ["1", 2],
        "clip_vision": ["1", 3],
        "width": WIDTH,
        "height": HEIGHT,
        "fs": 0,
        "fit": "crop",
        **sampling,
    }
    prompt = {
        "1": {
            "class_type": "DynamiCrafterCheckpointLoader",
            "inputs": {"ckpt_name": interp_file, "variant": "auto", "weight_dtype": "default"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a flag in the wind", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "dc_long.png"}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["5", 0]}},
        "7": {"class_type": "ImageBatch", "inputs": {"image1": ["6", 0], "image2": ["4", 0]}},
        "8": {
            "class_type": "DynamiCrafterKeyframeChain",
            "inputs": {
                "model": ["1", 0],
                "keyframes": ["7", 0],
                "frames": FRAMES,
                "clip": ["1", 1],
                "segment_prompts": "\nthe flag turns back",
                **shared_inputs,
            },
        },
        "9": {
            "class_type": "DynamiCrafterLongVideo",
            "inputs": {
                "model": ["1", 0],
                "image": ["4", 0],
                "total_frames": 14,
                "overlap": 4,
                "mode": "return to source (512_interp)",
                "anchor_tokens": True,
                "match_colors": True,
                "clip_frames": FRAMES,
                **shared_inputs,
            },
        },
    }
    run = comfy_host.run_prompt(prompt, outputs=["8", "9"])
    assert tuple(run.output("8").shape) == (2 * (FRAMES - 1) + 1, HEIGHT, WIDTH, 3)
    assert tuple(run.output("9").shape) == (14, HEIGHT, WIDTH, 3)
