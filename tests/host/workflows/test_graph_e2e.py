"""A full image-to-video graph in the real host: loader -> CLIP encode -> conditioning -> sampler ->
VAEDecode -> CreateVideo -> SaveVideo, on tiny checkpoints in every real file layout."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from support.host_checkpoints import write_host_checkpoint
from support.reference_data import manifest_path

WIDTH, HEIGHT, FRAMES = 128, 64, 16


@pytest.fixture(scope="module")
def model_dirs(comfy_host, tmp_path_factory):
    """Model folders registered with the host, holding one file per layout, and an input picture."""
    root = tmp_path_factory.mktemp("models")
    manifest = manifest_path("512")
    (root / "checkpoints").mkdir()
    (root / "diffusion_models").mkdir()
    write_host_checkpoint(root / "checkpoints" / "dynamicrafter_512_v1.ckpt", "512", manifest, "ckpt")
    write_host_checkpoint(root / "checkpoints" / "dynamicrafter_512_v1_bf16.safetensors", "512", manifest, "bf16")
    write_host_checkpoint(
        root / "diffusion_models" / "dynamicrafter_512_fp16_pruned.safetensors", "512", manifest, "pruned"
    )
    for kind in ("checkpoints", "diffusion_models"):
        comfy_host.folder_paths.add_model_folder_path(kind, str(root / kind), is_default=True)
    picture = np.zeros((90, 160, 3), dtype=np.uint8)
    picture[:, :80] = (220, 120, 40)
    picture[30:60, 100:140] = (40, 90, 230)
    Image.fromarray(picture).save(Path(comfy_host.folder_paths.get_input_directory()) / "dc_test.png")
    comfy_host.load_builtin_extras()
    return root


def i2v_prompt(ckpt_name: str, prefix: str, steps: int = 2, frames: int = FRAMES, width: int = WIDTH) -> dict:
    return {
        "1": {
            "class_type": "DynamiCrafterCheckpointLoader",
            "inputs": {"ckpt_name": ckpt_name, "variant": "auto", "weight_dtype": "default"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red and blue flag waving", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "dc_test.png"}},
        "5": {
            "class_type": "DynamiCrafterImageToVideo",
            "inputs": {
                "positive": ["2", 0],
                "negative": ["3", 0],
                "vae": ["1", 2],
                "clip_vision": ["1", 3],
                "image": ["4", 0],
                "width": width,
                "height": HEIGHT,
                "frames": frames,
                "fs": 0,
                "batch_size": 1,
                "fit": "crop",
            },
        },
        "6": {
            "class_type": "DynamiCrafterSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["5", 0],
                "negative": ["5", 1],
                "latent": ["5", 2],
                "seed": 1,
                "steps": steps,
                "cfg": 7.5,
                "eta": 1.0,
                "guidance_rescale": -1.0,
                "spacing": "auto",
                "dynamic_rescale": "auto",
            },
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "CreateVideo", "inputs": {"images": ["7", 0], "fps": 8.0}},
        "9": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["8", 0], "filename_prefix": prefix, "format": "mp4", "codec": "h264"},
        },
    }


def saved_video(comfy_host, run) -> Path:
    files = [f for node in run.ui.values() for f in node.get("images", []) + node.get("animated", [])]
    assert files, f"no video in the outputs: {run.ui}"
    entry = files[0]
    return Path(comfy_host.folder_paths.get_output_directory()) / entry.get("subfolder", "") / entry["filename"]


def video_facts(path: Path) -> tuple[int, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(stream.average_rate)


def test_full_graph_writes_the_video(comfy_host, model_dirs):
    run = comfy_host.run_prompt(i2v_prompt("dynamicrafter_512_v1.ckpt", "dc_e2e"))
    assert video_facts(saved_video(comfy_host, run)) == (FRAMES, WIDTH, HEIGHT, 8.0)


def test_bf16_full_file_loads_through_the_loader(comfy_host, model_dirs):
    run = comfy_host.run_prompt(i2v_prompt("dynamicrafter_512_v1_bf16.safetensors", "dc_bf16", steps=1))
    assert video_facts(saved_video(comfy_host, run))[0] == FRAMES


def test_pruned_file_in_the_full_loader_names_the_stock_files(comfy_host, model_dirs):
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(model_dirs / "diffusion_models"))
    run = comfy_host.run_prompt(i2v_prompt("dynamicrafter_512_fp16_pruned.safetensors", "dc_pruned"), check=False)
    assert not run.success
    message = run.error["exception_message"]
    assert "dynamicrafter_512_fp16_pruned.safetensors" in message and "Load CLIP" in message


def test_pruned_file_through_the_model_loader(comfy_host, model_dirs):
    loader = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterLoadModel"]
    model, vae = loader.execute("dynamicrafter_512_fp16_pruned.safetensors", "auto", "default").result
    assert model.model.variant.name == "512"
    assert vae.latent_channels == 4


def test_size_off_the_grid_is_refused_when_queued(comfy_host, model_dirs):
    import asyncio

    valid = asyncio.run(
        comfy_host.execution.validate_prompt("size", i2v_prompt("dynamicrafter_512_v1.ckpt", "dc_bad", width=100), None)
    )
    assert not valid[0]
    assert "100x64 is not a multiple of 64" in str(valid[3]["5"]["errors"])


def interp_prompt(ckpt_name: str, prefix: str, mode: str, variant: str = "auto") -> dict:
    prompt = i2v_prompt(ckpt_name, prefix, steps=1)
    prompt["1"]["inputs"]["variant"] = variant
    prompt["5"] = {
        "class_type": "DynamiCrafterInterpolation",
        "inputs": {
            "positive": ["2", 0],
            "negative": ["3", 0],
            "vae": ["1", 2],
            "clip_vision": ["1", 3],
            "start_image": ["4", 0],
            "end_image": ["10", 0],
            "mode": mode,
            "width": WIDTH,
            "height": HEIGHT,
            "frames": FRAMES,
            "fs": 0,
            "batch_size": 1,
            "fit": "crop",
        },
    }
    prompt["10"] = {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}}
    if mode == "loop":
        prompt["11"] = {
            "class_type": "ImageFromBatch",
            "inputs": {"image": ["7", 0], "batch_index": 0, "length": FRAMES - 1},
        }
        prompt["8"]["inputs"]["images"] = ["11", 0]
    return prompt


@pytest.mark.parametrize("mode, frames", [("interpolate", FRAMES), ("loop", FRAMES - 1)])
def test_interpolation_and_loop_graphs(comfy_host, model_dirs, mode, frames):
    run = comfy_host.run_prompt(interp_prompt("dynamicrafter_512_v1.ckpt", f"dc_{mode}", mode, "512_interp"))
    assert video_facts(saved_video(comfy_host, run)) == (frames, WIDTH, HEIGHT, 8.0)


def test_non_interp_checkpoint_on_the_interpolation_node_says_which_file(comfy_host, model_dirs):
    run = comfy_host.run_prompt(interp_prompt("dynamicrafter_512_v1.ckpt", "dc_wrong", "interpolate"), check=False)
    assert not run.success
    assert "512_interp checkpoint" in run.error["exception_message"]
