"""The sampler-control workflows run end to end in the real host (in-process) on a tiny checkpoint at 128x64.

- ``video_restyle_512``: the shipped example video is loaded by the stock video nodes, its frames are the
  sampler's start latent; the restyled video differs from them, follows them at denoise 0.6 and not at 1, and
  denoise 0 gives the start latent back unchanged.
- ``pinned_first_frame_512``: frame 0 of the sampled latent is the picture's latent exactly, the other frames
  are made anew.
- ``image_guidance_512``: SamplerCustomAdvanced with the Text + Image Guider; its image_cfg changes the video.

Their generic checks (validation, the frontend's widget layout, UI and API agreement, the note) are those of
``test_new_workflows.py``, and ``test_server.py`` runs the first two through ``POST /prompt``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from support import workflow_checks as W
from support.comfy_server import WORKFLOW_INPUTS, load_api_workflow, shrink_workflow
from support.host_checkpoints import write_host_checkpoint
from support.reference_data import manifest_path

HERE = Path(__file__).resolve().parent

TINY_CKPT = "dynamicrafter_tiny_512.ckpt"
WIDTH, HEIGHT, FRAMES, STEPS = 128, 64, 16, 2
RESTYLE, PINNED, GUIDANCE = "video_restyle_512", "pinned_first_frame_512", "image_guidance_512"
VIDEO_FILE = "dynamicrafter_sunset.mp4"


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    """The in-process host with the video nodes, the tiny 512 checkpoint and the shipped pictures and video."""
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("control-workflow-models")
    write_host_checkpoint(folder / TINY_CKPT, "512", manifest_path("512"), "ckpt")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    for path in WORKFLOW_INPUTS.iterdir():
        shutil.copy(path, Path(comfy_host.folder_paths.get_input_directory()) / path.name)
    return comfy_host


def tiny(name: str) -> dict[str, Any]:
    prompt = shrink_workflow(load_api_workflow(name), ckpt_name=TINY_CKPT, width=WIDTH, height=HEIGHT, steps=STEPS)
    for node in prompt.values():
        if node["class_type"] == "DynamiCrafterScheduler":
            node["inputs"]["steps"] = STEPS
    return prompt


def node_id(prompt: dict[str, Any], class_type: str) -> str:
    (found,) = [k for k, n in prompt.items() if n["class_type"] == class_type]
    return found


def inputs_of(prompt: dict[str, Any], class_type: str) -> dict[str, Any]:
    return prompt[node_id(prompt, class_type)]["inputs"]


def run(host, prompt: dict[str, Any], *class_types: str):
    """Runs the prompt's video output and the named nodes; returns the run and those nodes' first outputs."""
    wanted = [node_id(prompt, t) for t in class_types]
    result = host.run_prompt(prompt, outputs=[node_id(prompt, "SaveVideo"), *wanted])
    return result, [result.output(k) for k in wanted]


def saved_frames(host, result) -> tuple[int, int, int]:
    (saved,) = [f for node in result.ui.values() for f in node.get("images", [])]
    path = Path(host.folder_paths.get_output_directory()) / saved.get("subfolder", "") / saved["filename"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.width, stream.height


# --------------------------------------------------------------------------------------------------
# The graphs
# --------------------------------------------------------------------------------------------------


def test_the_example_video_is_the_generators():
    expected = W.load_generator().video_files()[f"inputs/{VIDEO_FILE}"]
    with av.open(str(WORKFLOW_INPUTS / VIDEO_FILE)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        shipped = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)]).astype(np.int16)
    assert shipped.shape == expected.shape == (FRAMES, 320, 512, 3) and fps == 8.0
    assert np.abs(shipped - expected).mean() < 3  # H.264 is lossy; a different video is off by tens


def test_restyle_graph_feeds_the_videos_frames_to_the_sampler():
    prompt = load_api_workflow(RESTYLE)
    sampler, conditioning = inputs_of(prompt, "DynamiCrafterSampler"), inputs_of(prompt, "DynamiCrafterImageToVideo")
    fit, cut = inputs_of(prompt, "ImageScale"), inputs_of(prompt, "ImageFromBatch")
    assert sampler["denoise"] == 0.6 and sampler["latent"] == [node_id(prompt, "VAEEncode"), 0]
    assert inputs_of(prompt, "VAEEncode")["pixels"] == [node_id(prompt, "ImageScale"), 0]
    assert (fit["width"], fit["height"], fit["crop"]) == (conditioning["width"], conditioning["height"], "center")
    assert fit["image"] == [node_id(prompt, "ImageFromBatch"), 0] and cut["length"] == conditioning["frames"]
    assert cut["image"] == [node_id(prompt, "GetVideoComponents"), 0]
    assert inputs_of(prompt, "LoadVideo")["file"] == VIDEO_FILE and (WORKFLOW_INPUTS / VIDEO_FILE).is_file()
    assert (WORKFLOW_INPUTS / inputs_of(prompt, "LoadImage")["image"]).is_file()


def test_pinned_graph_pins_frame_0_of_the_pictures_latent():
    prompt = load_api_workflow(PINNED)
    sampler, conditioning = inputs_of(prompt, "DynamiCrafterSampler"), inputs_of(prompt, "DynamiCrafterImageToVideo")
    pin, fit = inputs_of(prompt, "DynamiCrafterPinFrames"), inputs_of(prompt, "ImageScale")
    assert sampler["latent"] == [node_id(prompt, "DynamiCrafterPinFrames"), 0] and sampler["denoise"] == 1.0
    assert (pin["pin"], pin["frames"]) == ("0", conditioning["frames"])
    assert inputs_of(prompt, "RepeatLatentBatch")["amount"] == conditioning["frames"]
    assert (fit["width"], fit["height"]) == (conditioning["width"], conditioning["height"])
    assert conditioning["image"] == [node_id(prompt, "ImageScale"), 0]
    assert fit["image"] == [node_id(prompt, "LoadImage"), 0]


def test_guidance_graph_is_the_original_sampler_in_pieces():
    prompt = load_api_workflow(GUIDANCE)
    custom, guider = inputs_of(prompt, "SamplerCustomAdvanced"), inputs_of(prompt, "DynamiCrafterImageGuider")
    conditioning = node_id(prompt, "DynamiCrafterImageToVideo")
    assert (guider["cfg"], guider["image_cfg"]) == (7.5, 5.0)
    assert (guider["positive"], guider["negative"], custom["latent_image"]) == (
        [conditioning, 0],
        [conditioning, 1],
        [conditioning, 2],
    )
    assert custom["guider"] == [node_id(prompt, "DynamiCrafterImageGuider"), 0]
    assert custom["sampler"] == [node_id(prompt, "DynamiCrafterDDIMSampler"), 0]
    assert custom["sigmas"] == [node_id(prompt, "DynamiCrafterScheduler"), 0]
    assert custom["noise"] == [node_id(prompt, "RandomNoise"), 0]
    assert inputs_of(prompt, "DynamiCrafterScheduler")["steps"] == 50
    assert inputs_of(prompt, "RandomNoise")["noise_seed"] == 123


# --------------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------------


def test_video_restyle_runs_and_denoise_keeps_part_of_the_video(host):
    prompt = tiny(RESTYLE)
    result, (restyled, start, frames, decoded) = run(
        host, prompt, "DynamiCrafterSampler", "VAEEncode", "ImageScale", "VAEDecode"
    )
    assert saved_frames(host, result) == (FRAMES, WIDTH, HEIGHT)
    restyled, start = restyled["samples"], start["samples"]
    assert start.shape == restyled.shape == (FRAMES, 4, HEIGHT // 8, WIDTH // 8)
    assert restyled.isfinite().all() and (restyled - start).abs().max() > 1e-3
    assert frames.shape == decoded.shape and (decoded - frames).abs().mean() > 0.01  # a new video

    inputs_of(prompt, "DynamiCrafterSampler")["denoise"] = 0.0
    _, (kept,) = run(host, prompt, "DynamiCrafterSampler")
    assert torch.equal(kept["samples"], start)


def test_restyle_depends_on_the_video_below_denoise_1_only(host):
    """The same run from other frames (stretched, not cropped): the result follows them at denoise 0.6 and is
    the same at denoise 1 (a new video from noise). The tiny random model's output dwarfs its VAE's tiny
    latents, so "closer to the input" cannot be measured with it; this dependence can."""
    results = {}
    for denoise in (0.6, 1.0):
        for crop in ("center", "disabled"):
            prompt = tiny(RESTYLE)
            inputs_of(prompt, "DynamiCrafterSampler")["denoise"] = denoise
            inputs_of(prompt, "ImageScale")["crop"] = crop
            _, (sampled, start) = run(host, prompt, "DynamiCrafterSampler", "VAEEncode")
            results[denoise, crop] = sampled["samples"], start["samples"]
    assert not torch.equal(results[0.6, "center"][1], results[0.6, "disabled"][1])  # other start latents
    partial = (results[0.6, "center"][0] - results[0.6, "disabled"][0]).abs().max()
    assert partial > 1e-4 * results[0.6, "center"][0].abs().max()
    assert torch.equal(results[1.0, "center"][0], results[1.0, "disabled"][0])


def test_pinned_first_frame_runs_and_frame_0_is_the_pictures_latent(host):
    prompt = tiny(PINNED)
    result, (sampled, picture, pinned) = run(
        host, prompt, "DynamiCrafterSampler", "VAEEncode", "DynamiCrafterPinFrames"
    )
    assert saved_frames(host, result) == (FRAMES, WIDTH, HEIGHT)
    sampled, picture = sampled["samples"], picture["samples"]
    assert sampled.shape == (FRAMES, 4, HEIGHT // 8, WIDTH // 8) and picture.shape == (1, *sampled.shape[1:])
    assert torch.equal(sampled[0], picture[0])  # bit for bit
    assert torch.equal(pinned["noise_mask"].flatten(1).amax(1), (torch.arange(FRAMES) > 0).float())
    assert sampled.isfinite().all() and all((sampled[t] - picture[0]).abs().max() > 1e-3 for t in range(1, FRAMES))


def test_image_guidance_runs_and_image_cfg_changes_the_video(host):
    prompt = tiny(GUIDANCE)
    result, (separate,) = run(host, prompt, "SamplerCustomAdvanced")
    assert saved_frames(host, result) == (FRAMES, WIDTH, HEIGHT)
    inputs_of(prompt, "DynamiCrafterImageGuider")["image_cfg"] = inputs_of(prompt, "DynamiCrafterImageGuider")["cfg"]
    _, (single,) = run(host, prompt, "SamplerCustomAdvanced")
    separate, single = separate["samples"], single["samples"]
    assert separate.shape == single.shape == (FRAMES, 4, HEIGHT // 8, WIDTH // 8) and separate.isfinite().all()
    assert (separate - single).abs().max() > 1e-3
