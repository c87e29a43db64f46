"""The camera-control workflows: a picture, a prompt and a camera preset to a video, with a CamI2V model."""

from __future__ import annotations

from dataclasses import replace

from ..builders import (
    FRAMES,
    START_PICTURE,
    i2v_conditioning,
    loader,
    model_download,
    picture,
    prompts,
    sampler,
    vae_decode,
    variant,
    video_out,
)
from ..graph import CONDITIONING, DECODE, IMAGE, Node, Workflow, sorted_nodes

CAMERA_MODEL, PRESET, PREVIEW, APPLY = 60, 61, 62, 64
"""Node ids of the camera nodes (above the shared ids of graph.py)."""
CAMERA_FILES = {"256": "256_cami2v.pt", "512": "512_cami2v_100k.pt"}
"""The CamI2V releases on MuteApo/CamI2V the workflows load (512: the longer-trained one)."""
CAMERA_REPO = "MuteApo/CamI2V"
SETTINGS = {"256": {"fs": 2}, "512": {"fs": 14}}
"""The reference's gradio demo: frame stride 2 (256 reads it as fs; 512 reads fps = 29.97 // 2 = 14)."""
SAMPLING = {"steps": 25, "cfg": 5.5, "spacing": "uniform_trailing", "guidance_rescale": 0.7}
"""The reference's gradio demo settings (25 steps, CFG 5.5, trailing DDIM, guidance rescale 0.7, eta 1)."""
CAMERA_PROMPT = "a quiet lakeside village at sunset, cinematic shot, photorealistic, smooth camera movement"


def camera_model_note(size: str) -> str:
    camera = CAMERA_FILES[size]
    return (
        f"Put `{camera}` of [{CAMERA_REPO}](https://huggingface.co/{CAMERA_REPO}/tree/main) in "
        "`ComfyUI/models/checkpoints`, beside the base DynamiCrafter file the first loader reads (CLIP, VAE and "
        "CLIP vision come from it; the camera loader lays the camera file over it when the file holds only the "
        "trained layers). The same chain loads `256_motionctrl.pt`, `256_cameractrl.pt` and `512_cami2v_50k.pt`."
    )


def camera_control(size: str) -> Workflow:
    row = variant(size)
    camera_file = CAMERA_FILES[size]
    nodes = [
        loader(row),
        Node(
            CAMERA_MODEL,
            "DynamiCrafterLoadCameraModel",
            f"Load CamI2V {size}",
            (0, 600),
            (380, 130),
            {"camera_checkpoint": camera_file, "base_checkpoint": row.file_name},
            models=(
                model_download(row),
                {
                    "name": camera_file,
                    "url": f"https://huggingface.co/{CAMERA_REPO}/resolve/main/{camera_file}",
                    "directory": "checkpoints",
                },
            ),
        ),
        *prompts(CAMERA_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        replace(i2v_conditioning(row), widgets={**i2v_conditioning(row).widgets, **SETTINGS[size]}),
        Node(PRESET, "DynamiCrafterCameraPreset", "Camera move", (430, 400), (340, 130), {"preset": "orbit left"}),
        Node(
            PREVIEW,
            "DynamiCrafterCameraPreview",
            "Camera path (top view | side view)",
            (430, 580),
            (420, 330),
            {},
            {"camera": (PRESET, 0)},
        ),
        Node(
            APPLY,
            "DynamiCrafterApplyCamera",
            "Apply the camera",
            (900, 360),
            (340, 100),
            {},
            {"positive": (CONDITIONING, 0), "negative": (CONDITIONING, 1), "camera": (PRESET, 0)},
        ),
        replace(sampler(model=(CAMERA_MODEL, 0), positive=(APPLY, 0), negative=(APPLY, 1)), widgets=dict(SAMPLING)),
        vae_decode(),
        *video_out((DECODE, 0), f"DynamiCrafter/camera_{row.name}"),
    ]
    return Workflow(
        name=f"camera_control_{row.name}",
        title=f"DynamiCrafter {row.name}: camera control (CamI2V)",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video whose camera follows a "
            "preset move (here an orbit to the left), with the CamI2V camera model; the preview shows the path "
            "before sampling."
        ),
        nodes=sorted_nodes(nodes),
        model_note=camera_model_note(size),
    )
