"""The pack's example workflows, each described once in Python and written in both ComfyUI formats.

    python workflows/generate.py          # (re)write every file
    python workflows/generate.py --check  # exit 1 when a committed file differs from this script's output

Writes, for every workflow ``<name>``:

- ``workflows/<name>.json``: the graph-editor (LiteGraph, "UI") format. ComfyUI lists the JSON files at the
  top of a pack's ``workflows/`` folder in its template browser (``GET /workflow_templates``) and uses
  ``workflows/<name>.jpg`` as the thumbnail.
- ``workflows/api/<name>.json``: the API ("prompt") format for ``POST /prompt`` and batch scripts. It sits
  in a subfolder so that the template browser, which reads only the top of the folder, never lists it.
- ``workflows/inputs/*.png``: the example pictures the workflows load (drawn here, no third-party images);
  copy them into ComfyUI's ``input`` folder, or pick your own picture in the Load Image node.

The UI format stores widget values by position, in the order the frontend builds a node's widgets: the
node's inputs in ``/object_info`` order (``input_order``: required, then optional), one value per widget
input, plus an extra "control after generate" value after a seed and an "image" value for the upload
button of Load Image. ``NODE_TYPES`` below holds that layout for every node type the workflows use;
``tests/host/test_workflows.py`` checks it against the real node definitions.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
API_DIR = "api"
INPUT_DIR = "inputs"
FRONTEND_VERSION = "1.27.10"  # the frontend of the pinned ComfyUI (comfyui-frontend-package)
CORE_VERSION = "0.3.64"  # the ComfyUI release the workflows are checked against
CORE_CNR_ID = "comfy-core"

CONTROL = "control_after_generate"
"""Marker in a widget layout: the frontend's extra "control after generate" widget after a seed."""
UPLOAD = "upload"
"""Marker in a widget layout: Load Image's upload button (saved as the value "image")."""

START_PICTURE = "dynamicrafter_start.png"
END_PICTURE = "dynamicrafter_end.png"
MIDDLE_PICTURE = "dynamicrafter_middle.png"  # the keyframe between the two, same size
VIDEO_FPS = 8.0  # the original scripts save their 16-frame clips at 8 frames per second
FRAMES = 16

log = logging.getLogger("workflows.generate")


def pack_id() -> str:
    """The pack's Comfy Registry id (``[project].name``), written as ``properties.cnr_id`` of its nodes."""
    text = PYPROJECT.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the first `name = "..."` of the [project] table
        match = re.search(r'^\[project\][^\[]*?^name\s*=\s*"([^"]+)"', text, re.MULTILINE | re.DOTALL)
        if match is None:
            raise ValueError(f"no [project] name in {PYPROJECT}") from None
        return match.group(1)
    return tomllib.loads(text)["project"]["name"]


# --------------------------------------------------------------------------------------------------
# Node types: sockets, widgets and outputs in the frontend's order
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Socket:
    name: str
    type: str
    optional: bool = False


@dataclass(frozen=True)
class NodeType:
    sockets: tuple[Socket, ...]
    widgets: tuple[str, ...]
    outputs: tuple[tuple[str, str], ...]
    ours: bool = False
    """A node of this pack (``cnr_id`` = the pack's id) rather than a stock one."""


_CONDITIONING_SOCKETS = (Socket("positive", "CONDITIONING"), Socket("negative", "CONDITIONING"),
                         Socket("vae", "VAE"), Socket("clip_vision", "CLIP_VISION"))
_VIDEO_WIDGETS = ("width", "height", "frames", "fs", "batch_size", "fit")
_CONDITIONING_OUTPUTS = (("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent", "LATENT"))

NODE_TYPES: dict[str, NodeType] = {
    "DynamiCrafterCheckpointLoader": NodeType(
        (), ("ckpt_name", "variant", "weight_dtype"),
        (("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE"), ("CLIP_VISION", "CLIP_VISION")), ours=True),
    "DynamiCrafterImageToVideo": NodeType(
        (*_CONDITIONING_SOCKETS, Socket("image", "IMAGE")), (*_VIDEO_WIDGETS, "noise_augmentation"),
        _CONDITIONING_OUTPUTS, ours=True),
    "DynamiCrafterInterpolation": NodeType(
        (*_CONDITIONING_SOCKETS, Socket("start_image", "IMAGE"), Socket("end_image", "IMAGE", optional=True)),
        ("mode", *_VIDEO_WIDGETS, "noise_augmentation", "end_image_tokens", "end_token_schedule"),
        _CONDITIONING_OUTPUTS, ours=True),
    "DynamiCrafterSampler": NodeType(
        (Socket("model", "MODEL"), Socket("positive", "CONDITIONING"), Socket("negative", "CONDITIONING"),
         Socket("latent", "LATENT")),
        ("seed", CONTROL, "steps", "cfg", "eta", "guidance_rescale", "spacing", "dynamic_rescale", "image_cfg",
         "denoise"),
        (("latent", "LATENT"),), ours=True),
    "CLIPTextEncode": NodeType((Socket("clip", "CLIP"),), ("text",), (("CONDITIONING", "CONDITIONING"),)),
    "LoadImage": NodeType((), ("image", UPLOAD), (("IMAGE", "IMAGE"), ("MASK", "MASK"))),
    "VAEDecode": NodeType((Socket("samples", "LATENT"), Socket("vae", "VAE")), (), (("IMAGE", "IMAGE"),)),
    "ImageFromBatch": NodeType((Socket("image", "IMAGE"),), ("batch_index", "length"), (("IMAGE", "IMAGE"),)),
    "CreateVideo": NodeType((Socket("images", "IMAGE"), Socket("audio", "AUDIO", optional=True)), ("fps",),
                            (("VIDEO", "VIDEO"),)),
    "SaveVideo": NodeType((Socket("video", "VIDEO"),), ("filename_prefix", "format", "codec"), ()),
    "ImageBatch": NodeType((Socket("image1", "IMAGE"), Socket("image2", "IMAGE")), (), (("IMAGE", "IMAGE"),)),
    "DynamiCrafterKeyframeChain": NodeType(
        (Socket("model", "MODEL"), *_CONDITIONING_SOCKETS, Socket("keyframes", "IMAGE"),
         Socket("clip", "CLIP", optional=True)),
        ("width", "height", "frames", "fs", "seed", CONTROL, "steps", "cfg", "eta", "guidance_rescale", "fit",
         "segment_prompts", "noise_augmentation", "end_image_tokens", "end_token_schedule"), (("images", "IMAGE"),),
        ours=True),
    "DynamiCrafterLongVideo": NodeType(
        (Socket("model", "MODEL"), *_CONDITIONING_SOCKETS, Socket("image", "IMAGE")),
        ("total_frames", "overlap", "mode", "anchor_tokens", "match_colors", "width", "height", "clip_frames", "fs",
         "seed", CONTROL, "steps", "cfg", "eta", "guidance_rescale", "fit"), (("images", "IMAGE"),), ours=True),
    "DynamiCrafterToonCrafterLoader": NodeType(
        (), ("ckpt_name", "weight_dtype"),
        (("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE"), ("CLIP_VISION", "CLIP_VISION"),
         ("tooncrafter_vae", "TOONCRAFTER_VAE")), ours=True),
    "DynamiCrafterToonCrafterDecode": NodeType(
        (Socket("samples", "LATENT"), Socket("tooncrafter_vae", "TOONCRAFTER_VAE"), Socket("start_image", "IMAGE"),
         Socket("end_image", "IMAGE")), ("frames", "fit", "middle_pass"), (("IMAGE", "IMAGE"),), ours=True),
    "DynamiCrafterDirectorConnection": NodeType(
        (), ("provider", "model", "api_key_env", "custom_url", "timeout", "retries", "retry_delay"),
        (("director", "DYNAMICRAFTER_DIRECTOR"),), ours=True),
    "DynamiCrafterDirectorDescribeImage": NodeType(
        (Socket("director", "DYNAMICRAFTER_DIRECTOR"), Socket("image", "IMAGE")),
        ("temperature", "seed", CONTROL, "hint", "style"), (("prompt", "STRING"),), ours=True),
    "DynamiCrafterDirectorStoryboard": NodeType(
        (Socket("director", "DYNAMICRAFTER_DIRECTOR"), Socket("style_image", "IMAGE", optional=True)),
        ("story", "scenes", "temperature", "seed", CONTROL, "style"),
        (("prompts", "STRING"), ("prompt list", "STRING"), ("style", "STRING")), ours=True),
    "DynamiCrafterDirectorSoundtrack": NodeType(
        (Socket("director", "DYNAMICRAFTER_DIRECTOR"), Socket("frames", "IMAGE", optional=True)),
        ("description", "folder", "seconds", "fps", "fade_out", "temperature", "seed", CONTROL),
        (("audio", "AUDIO"), ("track", "STRING"), ("reason", "STRING")), ours=True),
}
LOADER_TYPES = ("DynamiCrafterCheckpointLoader", "DynamiCrafterToonCrafterLoader")
NOTE_TYPE = "MarkdownNote"
"""The frontend's own note node (not a backend node: it is left out of the API format)."""


_IMAGE_CONTROL_HELP = {
    "noise_augmentation": "noise added to the picture before it is encoded; 0 (the original) adds none. A "
                          "little (0.02-0.1) loosens the hold on the picture: more motion, less likeness.",
    "end_image_tokens": "how much of the end picture's image tokens the frames see; 0 (the original) = "
                        "the start picture's only. Helps when the two pictures differ a lot.",
    "end_token_schedule": "`constant`: every frame sees that share; `ramp`: none on the first frame, rising "
                          "to that share on the last.",
}
_SAMPLING_HELP = {
    "seed": "the random number that picks the noise. Clip i uses seed + 2*i, so clips never share noise; the "
            "original uses 123.",
    CONTROL: "what happens to the seed after each run: `fixed` keeps it, `randomize` picks a new one, "
             "`increment` / `decrement` step it.",
    "steps": "denoising steps per clip: 50 as in the original. Fewer is faster and softer.",
    "cfg": "how strongly the prompt and pictures steer the video (classifier-free guidance); 7.5 as in the original.",
    "eta": "1.0 (the original) adds fresh noise at every step; 0 makes the steps deterministic.",
    "guidance_rescale": "tones down the over-contrast strong guidance causes. -1 = the model's own setting (0.7).",
    "fit": "how a picture of another shape fits the frame: `crop` keeps the centre, `pad` adds black bars.",
}
_DIRECTOR_HELP = {
    "temperature": "how freely the AI model answers: 0 gives the most predictable answer.",
    "seed": "sent to the AI model for repeatable answers where the service supports it.",
    CONTROL: "what happens to the seed after each run: `fixed` keeps it, `randomize` picks a new one.",
}

# --------------------------------------------------------------------------------------------------
# What each widget means, in plain words (the workflows' notes are written from this)
# --------------------------------------------------------------------------------------------------

WIDGET_HELP: dict[str, dict[str, str]] = {
    "DynamiCrafterCheckpointLoader": {
        "ckpt_name": "the DynamiCrafter file in `models/checkpoints` (the original `model.ckpt`, renamed as shown, "
                     "or Kijai's `*_v1_bf16.safetensors`).",
        "variant": "which DynamiCrafter the file is. `auto` tells it from the weights and the file name; set it "
                   "by hand only if you renamed the file and it is detected wrongly.",
        "weight_dtype": "how the model weights are kept in memory. `default` lets ComfyUI choose; `fp8_*` "
                        "halves the memory again on small graphics cards.",
    },
    "CLIPTextEncode": {
        "text": "the words the text encoder reads.",
    },
    "LoadImage": {
        "image": "the picture to animate, from ComfyUI's `input` folder. Any size works: it is fitted to the "
                 "video size.",
        UPLOAD: "the *choose file to upload* button puts a picture of yours into the `input` folder.",
    },
    "DynamiCrafterImageToVideo": {
        "width": "video width in pixels (a multiple of 64). Keep the model's own size: 256 for the 256 model, "
                 "512 for 512, 1024 for 1024.",
        "height": "video height in pixels (a multiple of 64): 256, 320 or 576 for the 256, 512 and 1024 models.",
        "frames": "how many frames to make. The models were trained on 16.",
        "fs": "motion control. The 512 and 1024 models read it as frames per second (smaller = more motion; "
              "their defaults are 24 and 10); the 256 model reads it as a frame stride (larger = more motion; "
              "default 3). 0 means the model's default.",
        "batch_size": "how many videos to make at once from the same picture.",
        "fit": "how a picture of another shape fits the frame: `crop` keeps the centre, `pad` adds black bars.",
        "noise_augmentation": _IMAGE_CONTROL_HELP["noise_augmentation"],
    },
    "DynamiCrafterInterpolation": {
        "mode": "`interpolate` fills the frames between the start and the end picture; `loop` makes a clip that "
                "starts and ends on the start picture (the end picture is not used).",
        "width": "video width in pixels: 512 for the interpolation model.",
        "height": "video height in pixels: 320 for the interpolation model.",
        "frames": "how many frames to make, both pictures included. The model was trained on 16.",
        "fs": "motion control as frames per second (smaller = more motion). The original interpolation and "
              "loop scripts use 5; 0 means the same.",
        "batch_size": "how many videos to make at once.",
        "fit": "how a picture of another shape fits the frame: `crop` keeps the centre, `pad` adds black bars.",
        **_IMAGE_CONTROL_HELP,
    },
    "DynamiCrafterSampler": {
        "seed": "the random number that picks the noise the video grows from. The same seed and settings give "
                "the same video; the original uses 123.",
        CONTROL: "what happens to the seed after each run: `fixed` keeps it, `randomize` picks a new one, "
                 "`increment` / `decrement` step it.",
        "steps": "denoising steps: 50 as in the original. Fewer is faster and softer.",
        "cfg": "how strongly the prompt and picture steer the video (classifier-free guidance); 7.5 as in the "
               "original.",
        "eta": "1.0 (the original) adds fresh noise at every step; 0 makes the steps deterministic.",
        "guidance_rescale": "tones down the over-contrast strong guidance causes. -1 = the model's own setting "
                            "(0.7 for the 512, 1024 and interpolation models, off for 256).",
        "spacing": "where the steps sit on the noise schedule. `auto` = the model's own (the original's).",
        "dynamic_rescale": "the original's correction of each step's clean-video estimate (512, 1024 and "
                           "interpolation models). `auto` = the model's own setting.",
        "image_cfg": "how strongly the picture steers the video, apart from the prompt (then `cfg` is the "
                     "prompt's alone): lower = freer motion, higher = closer to the picture. -1 = one scale for "
                     "both, as the original by default.",
        "denoise": "1 makes a new video from noise. Below 1 the latent input is kept in part (connect VAE Encode "
                   "of a video to restyle it); 0 returns it unchanged.",
    },
    "ImageFromBatch": {
        "batch_index": "the first frame to keep (0 = from the start).",
        "length": "how many frames to keep: 15 drops the last frame, which repeats the first one, so the clip "
                  "loops without a stutter.",
    },
    "CreateVideo": {
        "fps": "playback speed of the saved video in frames per second (the original saves at 8).",
    },
    "SaveVideo": {
        "filename_prefix": "where the video goes inside ComfyUI's `output` folder, and the start of its name.",
        "format": "the file format (`mp4`).",
        "codec": "the video codec (`h264` plays almost everywhere).",
    },
    "ImageBatch": {},
    "DynamiCrafterKeyframeChain": {
        "width": "video width in pixels: 512 for the interpolation model.",
        "height": "video height in pixels: 320 for the interpolation model.",
        "frames": "frames per segment (from one keyframe to the next), both keyframes included; the model was "
                  "trained on 16. K keyframes give 15*(K-1)+1 frames: every keyframe is shown once.",
        "fs": "motion control as frames per second (smaller = more motion); 5 as in the original interpolation "
              "script, 0 means the same.",
        **_SAMPLING_HELP,
        "segment_prompts": "optional: one prompt per line, line i for the segment from keyframe i to i+1 (needs the "
                           "`clip` input). An empty line, or no text, uses the positive prompt.",
        **_IMAGE_CONTROL_HELP,
    },
    "DynamiCrafterLongVideo": {
        "total_frames": "how many frames the finished video has (cut from the last clip).",
        "overlap": "frames each new clip shares with the one before; they are crossfaded. More = smoother joins, "
                   "fewer new frames per clip (at most half a clip).",
        "mode": "`continue` animates each clip on from the end of the previous one; `return to source` (512_interp "
                "model only) makes every clip end on the original picture.",
        "anchor_tokens": "take every clip's image tokens from the original picture, so the subject and style do not "
                         "drift.",
        "match_colors": "give each new clip's start frame the original picture's colours, against slow colour drift.",
        "width": "video width in pixels: 512 for the 512 model.",
        "height": "video height in pixels: 320 for the 512 model.",
        "clip_frames": "frames per generated clip; the models were trained on 16.",
        "fs": "motion control as frames per second (smaller = more motion); the 512 model's default is 24.",
        **_SAMPLING_HELP,
    },
    "DynamiCrafterToonCrafterLoader": {
        "ckpt_name": "the ToonCrafter file in `models/checkpoints` (the original `model.ckpt`, renamed as shown, or "
                     "`tooncrafter_512_interp-fp16.safetensors`).",
        "weight_dtype": "how the model weights are kept in memory. `default` lets ComfyUI choose; `fp8_*` halves "
                        "the memory again on small graphics cards.",
    },
    "DynamiCrafterToonCrafterDecode": {
        "frames": "frames per video: the same as the conditioning node's (16).",
        "fit": "how the pictures were fitted in the conditioning node (keep the two the same).",
        "middle_pass": "decode the two middle frames a second time, as the original scripts do (sharper middle).",
    },
    "DynamiCrafterDirectorConnection": {
        "provider": "the AI service: Gemini, GitHub Models, OpenAI, a local Ollama or LM Studio server, or "
                    "`Custom` (type its URL in custom_url).",
        "model": "the model name; empty uses the provider's usual vision model.",
        "api_key_env": "the NAME of the environment variable holding your key (never the key itself). Empty uses "
                       "the provider's usual one, e.g. `GEMINI_API_KEY`.",
        "custom_url": "the base URL for the `Custom` provider, e.g. `http://127.0.0.1:8080/v1`.",
        "timeout": "seconds to wait for one answer.",
        "retries": "how many times to try again after a rate limit, a server error or a lost connection.",
        "retry_delay": "seconds before the first retry; doubles with each further one.",
    },
    "DynamiCrafterDirectorDescribeImage": {
        **_DIRECTOR_HELP,
        "hint": "optional: what you want to happen, e.g. `the waves roll in, slow zoom`.",
        "style": "optional: style words to keep in mind.",
    },
    "DynamiCrafterDirectorStoryboard": {
        "story": "what happens in the film, in a few sentences.",
        "scenes": "how many scenes to plan: one per segment of the keyframe chain (keyframes - 1).",
        **_DIRECTOR_HELP,
        "style": "optional: your style words; empty lets the AI model write the shared style line.",
    },
    "DynamiCrafterDirectorSoundtrack": {
        "description": "what the clip shows; here it comes from the prompt(s) above.",
        "folder": "the folder holding your music (wav, flac, mp3, ogg, m4a...), optionally with `tags.txt` "
                  "(`file.mp3: calm, piano` per line). Only names and tags are sent, never audio.",
        "seconds": "clip length in seconds, used only when no frames are connected.",
        "fps": "the video's frame rate, to turn the connected frames into seconds (keep it equal to Make video's).",
        "fade_out": "seconds of fade-out at the end of the music.",
        **_DIRECTOR_HELP,
    },
}

# --------------------------------------------------------------------------------------------------
# Workflow description
# --------------------------------------------------------------------------------------------------

Link = tuple[int, int]
"""(source node id, source output slot)."""


@dataclass(frozen=True)
class Node:
    id: int
    type: str
    title: str
    pos: tuple[int, int]
    size: tuple[int, int]
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    models: tuple[dict[str, str], ...] = ()
    color: tuple[str, str] | None = None
    help: dict[str, str] = field(default_factory=dict)
    """Plain-words help for this node's widgets where the node type's general help does not fit."""


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    about: str
    nodes: tuple[Node, ...]
    note_pos: tuple[int, int] = (-460, 0)
    note_size: tuple[int, int] = (420, 1000)
    pictures: tuple[str, ...] = ()
    """The example pictures the thumbnail shows (empty: the conditioning node's start and end pictures)."""
    size: tuple[int, int] | None = None
    """The video size the thumbnail is cropped to (None: the conditioning node's)."""
    extra_notes: tuple[str, ...] = ()
    """Further sections of the note (markdown), after the model and pictures."""


@dataclass(frozen=True)
class Variant:
    """What a workflow needs to know about one released DynamiCrafter."""

    name: str
    ckpt_name: str
    hf_repo: str
    width: int
    height: int
    fs: int


VARIANTS: dict[str, Variant] = {
    "256": Variant("256", "dynamicrafter_256_v1.ckpt", "Doubiiu/DynamiCrafter", 256, 256, 3),
    "512": Variant("512", "dynamicrafter_512_v1.ckpt", "Doubiiu/DynamiCrafter_512", 512, 320, 24),
    "1024": Variant("1024", "dynamicrafter_1024_v1.ckpt", "Doubiiu/DynamiCrafter_1024", 1024, 576, 10),
    "512_interp": Variant("512_interp", "dynamicrafter_512_interp_v1.ckpt", "Doubiiu/DynamiCrafter_512_Interp",
                          512, 320, 5),
}


TOONCRAFTER = Variant("tooncrafter", "tooncrafter_512_interp.ckpt", "Doubiiu/ToonCrafter", 512, 320, 10)


def model_download(variant: Variant) -> dict[str, str]:
    """The frontend's download hint: the original file, saved under the name the workflow loads."""
    return {"name": variant.ckpt_name, "url": f"https://huggingface.co/{variant.hf_repo}/resolve/main/model.ckpt",
            "directory": "checkpoints"}


POSITIVE_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")
NOTE_COLOR = ("#432", "#653")

# Node ids, shared by every workflow (batch scripts can patch e.g. node 6's seed in any of them).
LOADER, POSITIVE, NEGATIVE, IMAGE, CONDITIONING, SAMPLER, DECODE, VIDEO, SAVE, END_IMAGE, TRIM, NOTE = range(1, 13)
# Nodes of the longer workflows (the keyframe chain and the long video take the sampler's id, 6, for their seed).
MIDDLE_IMAGE, BATCH_FIRST, BATCH_ALL, DIRECTOR, DESCRIBE, STORYBOARD, SOUNDTRACK = range(13, 20)


def _common_nodes(variant: Variant, prompt: str, conditioning: Node, prefix: str,
                  image_title: str = "Picture to animate", trim: bool = False) -> list[Node]:
    """Loader, prompts, start picture, sampler, decode, video: everything around the conditioning node."""
    video_source: Link = (TRIM, 0) if trim else (DECODE, 0)
    return [
        Node(LOADER, "DynamiCrafterCheckpointLoader", "Load DynamiCrafter", (0, 0), (380, 130),
             {"ckpt_name": variant.ckpt_name, "variant": "auto", "weight_dtype": "default"},
             models=(model_download(variant),)),
        Node(POSITIVE, "CLIPTextEncode", "Prompt: the motion you want", (430, 0), (420, 170), {"text": prompt},
             {"clip": (LOADER, 1)}, color=POSITIVE_COLOR,
             help={"text": "what should happen in the video: what moves and how, the camera, the mood. Short, "
                           "concrete words work best; the picture already shows what things look like."}),
        Node(NEGATIVE, "CLIPTextEncode", "Negative prompt (empty, as in the original)", (430, 220), (420, 120),
             {"text": ""}, {"clip": (LOADER, 1)}, color=NEGATIVE_COLOR,
             help={"text": "what the video should avoid. The original leaves it empty; its \"negative picture\" "
                           "is a plain gray image, added by the DynamiCrafter node by itself."}),
        Node(IMAGE, "LoadImage", image_title, (0, 200), (380, 360), {"image": START_PICTURE}),
        conditioning,
        _sampler(),
        Node(DECODE, "VAEDecode", "Decode frames", (1680, 0), (220, 50), {}, {"samples": (SAMPLER, 0),
                                                                              "vae": (LOADER, 2)}),
        Node(VIDEO, "CreateVideo", "Make video", (1680, 240), (270, 80), {"fps": VIDEO_FPS},
             {"images": video_source}),
        Node(SAVE, "SaveVideo", "Save video", (1990, 0), (420, 420),
             {"filename_prefix": prefix, "format": "mp4", "codec": "h264"}, {"video": (VIDEO, 0)}),
    ]


def _i2v_conditioning(variant: Variant) -> Node:
    return Node(CONDITIONING, "DynamiCrafterImageToVideo", "DynamiCrafter Image To Video", (900, 0), (340, 310),
                {"width": variant.width, "height": variant.height, "frames": FRAMES, "fs": variant.fs,
                 "batch_size": 1, "fit": "crop", "noise_augmentation": 0.0},
                {"positive": (POSITIVE, 0), "negative": (NEGATIVE, 0), "vae": (LOADER, 2),
                 "clip_vision": (LOADER, 3), "image": (IMAGE, 0)})


def _interp_conditioning(variant: Variant, mode: str) -> Node:
    links = {"positive": (POSITIVE, 0), "negative": (NEGATIVE, 0), "vae": (LOADER, 2), "clip_vision": (LOADER, 3),
             "start_image": (IMAGE, 0)}
    if mode == "interpolate":
        links["end_image"] = (END_IMAGE, 0)
    return Node(CONDITIONING, "DynamiCrafterInterpolation", "DynamiCrafter Interpolate / Loop", (900, 0), (340, 340),
                {"mode": mode, "width": variant.width, "height": variant.height, "frames": FRAMES, "fs": variant.fs,
                 "batch_size": 1, "fit": "crop", "noise_augmentation": 0.0, "end_image_tokens": 0.0,
                 "end_token_schedule": "constant"}, links)


I2V_PROMPT = "sunset over a calm sea, gentle waves rolling toward the shore, clouds drifting slowly"


def image_to_video(variant_name: str) -> Workflow:
    variant = VARIANTS[variant_name]
    return Workflow(
        name=f"image_to_video_{variant.name}",
        title=f"DynamiCrafter {variant.name}: image to video",
        about=(f"Animates one picture into a {FRAMES}-frame, {variant.width}x{variant.height} video guided by "
               f"the prompt, with the original {variant.name} model and its settings."),
        nodes=tuple(_common_nodes(variant, I2V_PROMPT, _i2v_conditioning(variant),
                                  f"DynamiCrafter/i2v_{variant.name}")),
    )


def interpolation() -> Workflow:
    variant = VARIANTS["512_interp"]
    nodes = _common_nodes(variant, "the sun slowly sinking into the sea, the sky turning deep orange",
                          _interp_conditioning(variant, "interpolate"), "DynamiCrafter/interpolation_512",
                          image_title="Start picture")
    nodes.append(Node(END_IMAGE, "LoadImage", "End picture", (0, 600), (380, 360), {"image": END_PICTURE}))
    return Workflow(
        name="interpolation_512",
        title="DynamiCrafter 512: interpolation between two pictures",
        about=(f"Fills the {FRAMES - 2} frames between a start and an end picture ({variant.width}x{variant.height}) "
               "with the DynamiCrafter interpolation model."),
        nodes=tuple(sorted(nodes, key=lambda n: n.id)),
    )


def loop() -> Workflow:
    variant = VARIANTS["512_interp"]
    nodes = _common_nodes(variant, "waves rippling on the sea at sunset, a gentle breeze, seamless loop",
                          _interp_conditioning(variant, "loop"), "DynamiCrafter/loop_512",
                          image_title="Picture (first and last frame of the loop)", trim=True)
    nodes.append(Node(TRIM, "ImageFromBatch", "Drop the repeated last frame", (1680, 100), (270, 82),
                      {"batch_index": 0, "length": FRAMES - 1}, {"image": (DECODE, 0)}))
    return Workflow(
        name="loop_512",
        title="DynamiCrafter 512: seamless loop",
        about=(f"Makes a looping {variant.width}x{variant.height} clip from one picture with the interpolation "
               f"model: the picture is the first and the last frame; the last is dropped so the "
               f"{FRAMES - 1}-frame clip repeats seamlessly."),
        nodes=tuple(sorted(nodes, key=lambda n: n.id)),
    )


# --------------------------------------------------------------------------------------------------
# Longer videos, ToonCrafter and the AI director
# --------------------------------------------------------------------------------------------------

DIRECTOR_NOTE = (
    "## AI director\n"
    "The *Director* nodes ask a vision-language model through any OpenAI-compatible service. Set your key in an "
    "environment variable before starting ComfyUI (e.g. `GEMINI_API_KEY`) and name that variable in "
    "*api_key_env*: the key itself is never stored in the workflow. Needs `pip install openai`. Put a few music "
    "files in a folder and type its path in the soundtrack node's *folder*.")
MUSIC_FOLDER = "~/Music/dynamicrafter"
KEYFRAME_SEGMENT_PROMPTS = ("the sun sinking toward the sea, clouds drifting\n"
                            "the sun touching the horizon, the sky turning deep orange")


def _loader(variant: Variant) -> Node:
    return Node(LOADER, "DynamiCrafterCheckpointLoader", "Load DynamiCrafter", (0, 0), (380, 130),
                {"ckpt_name": variant.ckpt_name, "variant": "auto", "weight_dtype": "default"},
                models=(model_download(variant),))


def _sampler() -> Node:
    """The DynamiCrafter Sampler with the original's defaults, fed by the conditioning node."""
    return Node(SAMPLER, "DynamiCrafterSampler", "DynamiCrafter Sampler", (1290, 0), (340, 330),
                {"seed": 123, CONTROL: "fixed", "steps": 50, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0,
                 "spacing": "auto", "dynamic_rescale": "auto", "image_cfg": -1.0, "denoise": 1.0},
                {"model": (LOADER, 0), "positive": (CONDITIONING, 0), "negative": (CONDITIONING, 1),
                 "latent": (CONDITIONING, 2)})


def _prompts(prompt: str | None, prompt_help: str | None = None) -> list[Node]:
    """Positive and negative prompt; ``None`` for a positive prompt that comes from the describe node."""
    positive_links: dict[str, Link] = {"clip": (LOADER, 1)}
    if prompt is None:
        positive_links["text"] = (DESCRIBE, 0)
    return [
        Node(POSITIVE, "CLIPTextEncode", "Prompt: the motion you want", (430, 0), (420, 170), {"text": prompt or ""},
             positive_links, color=POSITIVE_COLOR,
             help={"text": prompt_help or "what should happen in the video: what moves and how, the camera, the "
                                          "mood. Short, concrete words work best."}),
        Node(NEGATIVE, "CLIPTextEncode", "Negative prompt (empty, as in the original)", (430, 220), (420, 120),
             {"text": ""}, {"clip": (LOADER, 1)}, color=NEGATIVE_COLOR,
             help={"text": "what the video should avoid. The original leaves it empty."}),
    ]


def _video_out(images: Link, prefix: str, audio: Link | None = None) -> list[Node]:
    links = {"images": images}
    if audio is not None:
        links["audio"] = audio
    return [
        Node(VIDEO, "CreateVideo", "Make video", (1680, 240), (270, 80), {"fps": VIDEO_FPS}, links),
        Node(SAVE, "SaveVideo", "Save video", (1990, 0), (420, 420),
             {"filename_prefix": prefix, "format": "mp4", "codec": "h264"}, {"video": (VIDEO, 0)}),
    ]


def _keyframes() -> list[Node]:
    """Three pictures of one size, batched in order: start, middle, end."""
    return [
        Node(IMAGE, "LoadImage", "Keyframe 1", (0, 200), (300, 320), {"image": START_PICTURE}),
        Node(MIDDLE_IMAGE, "LoadImage", "Keyframe 2", (0, 560), (300, 320), {"image": MIDDLE_PICTURE}),
        Node(END_IMAGE, "LoadImage", "Keyframe 3", (0, 920), (300, 320), {"image": END_PICTURE}),
        Node(BATCH_FIRST, "ImageBatch", "Keyframes 1 + 2", (430, 400), (220, 50), {},
             {"image1": (IMAGE, 0), "image2": (MIDDLE_IMAGE, 0)}),
        Node(BATCH_ALL, "ImageBatch", "Keyframes 1 + 2 + 3", (430, 500), (220, 50), {},
             {"image1": (BATCH_FIRST, 0), "image2": (END_IMAGE, 0)}),
    ]


def _chain(segment_prompts: str | Link) -> Node:
    variant = VARIANTS["512_interp"]
    links: dict[str, Link] = {"model": (LOADER, 0), "positive": (POSITIVE, 0), "negative": (NEGATIVE, 0),
                              "vae": (LOADER, 2), "clip_vision": (LOADER, 3), "keyframes": (BATCH_ALL, 0),
                              "clip": (LOADER, 1)}
    text = segment_prompts if isinstance(segment_prompts, str) else ""
    if not isinstance(segment_prompts, str):
        links["segment_prompts"] = segment_prompts
    return Node(SAMPLER, "DynamiCrafterKeyframeChain", "DynamiCrafter Keyframe Chain", (900, 0), (340, 520),
                {"width": variant.width, "height": variant.height, "frames": FRAMES, "fs": variant.fs, "seed": 123,
                 CONTROL: "fixed", "steps": 50, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0, "fit": "crop",
                 "segment_prompts": text, "noise_augmentation": 0.0, "end_image_tokens": 0.0,
                 "end_token_schedule": "constant"}, links)


def _director() -> Node:
    return Node(DIRECTOR, "DynamiCrafterDirectorConnection", "Director connection (AI model)", (0, -420), (380, 250),
                {"provider": "Gemini (OpenAI-compatible)", "model": "", "api_key_env": "", "custom_url": "",
                 "timeout": 60.0, "retries": 3, "retry_delay": 1.0})


def _soundtrack(description: Link, frames: Link) -> Node:
    return Node(SOUNDTRACK, "DynamiCrafterDirectorSoundtrack", "Director: soundtrack from your music folder",
                (1290, 400), (340, 300),
                {"description": "", "folder": MUSIC_FOLDER, "seconds": 2.0, "fps": VIDEO_FPS, "fade_out": 0.5,
                 "temperature": 0.0, "seed": 0, CONTROL: "fixed"},
                {"director": (DIRECTOR, 0), "description": description, "frames": frames})


def _sorted(nodes: list[Node]) -> tuple[Node, ...]:
    return tuple(sorted(nodes, key=lambda n: n.id))


def keyframe_chain() -> Workflow:
    variant = VARIANTS["512_interp"]
    nodes = [_loader(variant), *_prompts("the sun slowly sinking into the sea, the sky turning orange"),
             *_keyframes(), _chain(KEYFRAME_SEGMENT_PROMPTS), *_video_out((SAMPLER, 0), "DynamiCrafter/keyframes_512")]
    return Workflow(
        name="keyframe_chain_512",
        title="DynamiCrafter 512: one video through three keyframes",
        about=(f"Interpolates keyframe 1 -> 2 -> 3 ({variant.width}x{variant.height}) with the interpolation model "
               f"in one run, one {FRAMES}-frame segment per pair, every keyframe shown once: "
               f"{2 * (FRAMES - 1) + 1} frames. Each line of *segment_prompts* steers one segment."),
        nodes=_sorted(nodes), pictures=(START_PICTURE, MIDDLE_PICTURE, END_PICTURE),
        size=(variant.width, variant.height))


def long_video() -> Workflow:
    variant = VARIANTS["512"]
    node = Node(SAMPLER, "DynamiCrafterLongVideo", "DynamiCrafter Long Video", (900, 0), (340, 560),
                {"total_frames": 40, "overlap": 4, "mode": "continue", "anchor_tokens": True, "match_colors": False,
                 "width": variant.width, "height": variant.height, "clip_frames": FRAMES, "fs": variant.fs,
                 "seed": 123, CONTROL: "fixed", "steps": 50, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0,
                 "fit": "crop"},
                {"model": (LOADER, 0), "positive": (POSITIVE, 0), "negative": (NEGATIVE, 0), "vae": (LOADER, 2),
                 "clip_vision": (LOADER, 3), "image": (IMAGE, 0)})
    nodes = [_loader(variant), *_prompts(I2V_PROMPT),
             Node(IMAGE, "LoadImage", "Picture to animate", (0, 200), (380, 360), {"image": START_PICTURE}), node,
             *_video_out((SAMPLER, 0), "DynamiCrafter/long_512")]
    return Workflow(
        name="long_video_512",
        title="DynamiCrafter 512: long video from one picture",
        about=(f"Animates one picture into a 40-frame {variant.width}x{variant.height} video (5 s at 8 fps): "
               f"{FRAMES}-frame clips, each continuing the one before, joined by 4 crossfaded frames."),
        nodes=_sorted(nodes), pictures=(START_PICTURE,), size=(variant.width, variant.height))


def tooncrafter() -> Workflow:
    variant = TOONCRAFTER
    loader = Node(LOADER, "DynamiCrafterToonCrafterLoader", "Load ToonCrafter", (0, 0), (380, 130),
                  {"ckpt_name": variant.ckpt_name, "weight_dtype": "default"}, models=(model_download(variant),))
    conditioning = Node(CONDITIONING, "DynamiCrafterInterpolation", "DynamiCrafter Interpolate", (900, 0), (340, 340),
                        {"mode": "interpolate", "width": variant.width, "height": variant.height, "frames": FRAMES,
                         "fs": variant.fs, "batch_size": 1, "fit": "crop", "noise_augmentation": 0.0,
                         "end_image_tokens": 0.0, "end_token_schedule": "constant"},
                        {"positive": (POSITIVE, 0), "negative": (NEGATIVE, 0), "vae": (LOADER, 2),
                         "clip_vision": (LOADER, 3), "start_image": (IMAGE, 0), "end_image": (END_IMAGE, 0)},
                        help={"fs": "motion control as frames per second; ToonCrafter's original scripts use 10.",
                              "width": "video width in pixels: 512 for ToonCrafter.",
                              "height": "video height in pixels: 320 for ToonCrafter."})
    nodes = [loader, *_prompts("an anime scene, the sun sinking into the sea, clouds drifting"),
             Node(IMAGE, "LoadImage", "Start picture", (0, 200), (380, 360), {"image": START_PICTURE}),
             Node(END_IMAGE, "LoadImage", "End picture", (0, 600), (380, 360), {"image": END_PICTURE}),
             conditioning,
             _sampler(),
             Node(DECODE, "DynamiCrafterToonCrafterDecode", "ToonCrafter decode", (1680, 0), (300, 200),
                  {"frames": FRAMES, "fit": "crop", "middle_pass": True},
                  {"samples": (SAMPLER, 0), "tooncrafter_vae": (LOADER, 4), "start_image": (IMAGE, 0),
                   "end_image": (END_IMAGE, 0)}),
             *_video_out((DECODE, 0), "DynamiCrafter/tooncrafter_512")]
    return Workflow(
        name="tooncrafter_512",
        title="ToonCrafter 512: cartoon interpolation between two pictures",
        about=(f"Fills the frames between a start and an end picture ({variant.width}x{variant.height}, {FRAMES} "
               "frames) with ToonCrafter: the interpolation UNet, then ToonCrafter's own decoder, which looks at "
               "both pictures again while decoding."),
        nodes=_sorted(nodes))


def photo_to_film() -> Workflow:
    variant = VARIANTS["512"]
    describe = Node(DESCRIBE, "DynamiCrafterDirectorDescribeImage", "Director: describe the picture", (430, -420),
                    (420, 260), {"temperature": 0.0, "seed": 0, CONTROL: "fixed", "hint": "", "style": ""},
                    {"director": (DIRECTOR, 0), "image": (IMAGE, 0)})
    nodes = [_loader(variant), _director(), describe,
             *_prompts(None, "comes from the director's description of the picture (type your own prompt here "
                             "instead by removing the link)."),
             Node(IMAGE, "LoadImage", "Picture to animate", (0, 200), (380, 360), {"image": START_PICTURE}),
             _i2v_conditioning(variant),
             _sampler(),
             Node(DECODE, "VAEDecode", "Decode frames", (1680, 0), (220, 50), {},
                  {"samples": (SAMPLER, 0), "vae": (LOADER, 2)}),
             _soundtrack((DESCRIBE, 0), (DECODE, 0)),
             *_video_out((DECODE, 0), "DynamiCrafter/photo_to_film", audio=(SOUNDTRACK, 0))]
    return Workflow(
        name="photo_to_film",
        title="DynamiCrafter 512: photo to film with music (AI director)",
        about=(f"An AI model describes the picture as a motion prompt, DynamiCrafter 512 animates it "
               f"({FRAMES} frames, {variant.width}x{variant.height}), and the AI picks a track from your music "
               "folder, cut to the clip's length."),
        nodes=_sorted(nodes), extra_notes=(DIRECTOR_NOTE,))


def story_to_film() -> Workflow:
    variant = VARIANTS["512_interp"]
    storyboard = Node(STORYBOARD, "DynamiCrafterDirectorStoryboard", "Director: story to scene prompts", (430, -420),
                      (420, 300),
                      {"story": "The sun sets over a quiet sea. It sinks to the horizon and the sky burns orange.",
                       "scenes": 2, "temperature": 0.0, "seed": 0, CONTROL: "fixed", "style": ""},
                      {"director": (DIRECTOR, 0)})
    nodes = [_loader(variant), _director(), storyboard, *_prompts("a calm sea at sunset"), *_keyframes(),
             _chain((STORYBOARD, 0)), _soundtrack((STORYBOARD, 0), (SAMPLER, 0)),
             *_video_out((SAMPLER, 0), "DynamiCrafter/story_to_film", audio=(SOUNDTRACK, 0))]
    return Workflow(
        name="story_to_film",
        title="DynamiCrafter 512: story to film through keyframes, with music (AI director)",
        about=(f"An AI model splits the story into one scene prompt per segment (scenes = keyframes - 1), the "
               f"keyframe chain interpolates keyframe 1 -> 2 -> 3 with them ({2 * (FRAMES - 1) + 1} frames, "
               f"{variant.width}x{variant.height}), and the AI picks a track from your music folder."),
        nodes=_sorted(nodes), pictures=(START_PICTURE, MIDDLE_PICTURE, END_PICTURE),
        size=(variant.width, variant.height), extra_notes=(DIRECTOR_NOTE,))



WORKFLOWS: tuple[Callable[[], Workflow], ...] = (
    lambda: image_to_video("256"),
    lambda: image_to_video("512"),
    lambda: image_to_video("1024"),
    interpolation,
    loop,
    keyframe_chain,
    long_video,
    tooncrafter,
    photo_to_film,
    story_to_film,
)


def workflows() -> list[Workflow]:
    return [make() for make in WORKFLOWS]


# --------------------------------------------------------------------------------------------------
# The note: every widget in plain words
# --------------------------------------------------------------------------------------------------


def _widget_label(name: str) -> str:
    return {CONTROL: "control after generate", UPLOAD: "upload"}.get(name, name)


def _format_value(value: Any) -> str:
    if isinstance(value, str) and "\n" in value:  # one line of the note per widget
        return " / ".join(f"`{line}`" for line in value.splitlines())
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    return f"`{value}`"


def note_text(workflow: Workflow) -> str:
    loader = next(n for n in workflow.nodes if n.type in LOADER_TYPES)
    download = loader.models[0]
    lines = [
        f"# {workflow.title}",
        "",
        workflow.about,
        "",
        "## Model",
        f"Put `{download['name']}` in `ComfyUI/models/{download['directory']}`: download `model.ckpt` from "
        f"[{download['url'].split('/resolve/')[0].removeprefix('https://huggingface.co/')}]({download['url']}) and "
        "rename it, or let the *DynamiCrafter Download Model* node fetch it. With Kijai's `*_fp16_pruned` files use "
        "*DynamiCrafter Load Model* with the stock *Load CLIP* (type `stable_diffusion`) and *Load CLIP Vision* "
        "(`CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`) instead of the loader here.",
        "",
        "## Pictures",
        f"The example pictures are in this pack's `workflows/{INPUT_DIR}` folder: copy them into `ComfyUI/input`, "
        "or choose your own picture in the Load Image node.",
        "",
    ]
    for section in workflow.extra_notes:
        lines += [section, ""]
    lines += ["## Settings, node by node"]
    order = _execution_order(workflow)
    for node in sorted(workflow.nodes, key=lambda n: order[n.id]):
        layout = NODE_TYPES[node.type].widgets
        if not layout:
            continue
        lines += ["", f"**{node.title}**"]
        for name in layout:
            value = "" if name == UPLOAD else f" ({_format_value(_ui_value(node, name))})"
            explanation = node.help.get(name) or WIDGET_HELP[node.type][name]
            lines.append(f"- **{_widget_label(name)}**{value}: {explanation}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Both formats
# --------------------------------------------------------------------------------------------------


def _ui_value(node: Node, name: str) -> Any:
    if name == UPLOAD:
        return "image"
    return node.widgets[name]


def _link_table(workflow: Workflow) -> list[list[Any]]:
    """LiteGraph links ``[id, origin, origin slot, target, target slot, type]``, numbered by target."""
    table: list[list[Any]] = []
    by_id = {n.id: n for n in workflow.nodes}
    for node in workflow.nodes:
        sockets = NODE_TYPES[node.type].sockets
        for slot, socket in enumerate(sockets):
            if socket.name in node.links:
                origin, origin_slot = node.links[socket.name]
                out_type = NODE_TYPES[by_id[origin].type].outputs[origin_slot][1]
                table.append([len(table) + 1, origin, origin_slot, node.id, slot, out_type])
        for slot, name in enumerate(_linked_widgets(node), start=len(sockets)):
            origin, origin_slot = node.links[name]
            out_type = NODE_TYPES[by_id[origin].type].outputs[origin_slot][1]
            table.append([len(table) + 1, origin, origin_slot, node.id, slot, out_type])
    return table


def _linked_widgets(node: Node) -> list[str]:
    """Widgets fed by a link (the frontend's widget inputs), in widget order; they follow the sockets."""
    return [name for name in NODE_TYPES[node.type].widgets if name in node.links]


def _execution_order(workflow: Workflow) -> dict[int, int]:
    """Topological order (the frontend's ``order``): sources first, ties by node id; the note first."""
    pending = {n.id: {src for src, _ in n.links.values()} for n in workflow.nodes}
    order: dict[int, int] = {NOTE: 0}
    while pending:
        ready = sorted(i for i, deps in pending.items() if deps <= set(order))
        for node_id in ready:
            order[node_id] = len(order)
            del pending[node_id]
    return order


def ui_format(workflow: Workflow, cnr_id: str) -> dict[str, Any]:
    links = _link_table(workflow)
    order = _execution_order(workflow)
    nodes: list[dict[str, Any]] = [{
        "id": NOTE, "type": NOTE_TYPE, "pos": list(workflow.note_pos), "size": list(workflow.note_size),
        "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [], "title": "Read me",
        "properties": {}, "widgets_values": [note_text(workflow)], "color": NOTE_COLOR[0], "bgcolor": NOTE_COLOR[1],
    }]
    for node in workflow.nodes:
        spec = NODE_TYPES[node.type]
        inputs = []
        for slot, socket in enumerate(spec.sockets):
            link = next((row[0] for row in links if row[3] == node.id and row[4] == slot), None)
            entry: dict[str, Any] = {"name": socket.name, "type": socket.type, "link": link}
            if socket.optional:
                entry["shape"] = 7
            inputs.append(entry)
        for slot, name in enumerate(_linked_widgets(node), start=len(spec.sockets)):
            row = next(row for row in links if row[3] == node.id and row[4] == slot)
            inputs.append({"name": name, "type": row[5], "widget": {"name": name}, "link": row[0]})
        outputs = []
        for slot, (name, out_type) in enumerate(spec.outputs):
            out_links = [row[0] for row in links if row[1] == node.id and row[2] == slot]
            outputs.append({"name": name, "type": out_type, "slot_index": slot, "links": out_links or None})
        properties: dict[str, Any] = {"cnr_id": cnr_id if spec.ours else CORE_CNR_ID}
        if not spec.ours:
            properties["ver"] = CORE_VERSION
        properties["Node name for S&R"] = node.type
        if node.models:
            properties["models"] = [dict(m) for m in node.models]
        entry = {
            "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
            "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs, "title": node.title,
            "properties": properties, "widgets_values": [_ui_value(node, name) for name in spec.widgets],
        }
        if node.color:
            entry["color"], entry["bgcolor"] = node.color
        nodes.append(entry)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cnr_id}/workflows/{workflow.name}")),
        "revision": 0,
        "last_node_id": max(n["id"] for n in nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [520, 80]}, "frontendVersion": FRONTEND_VERSION},
        "version": 0.4,
    }


def api_format(workflow: Workflow) -> dict[str, Any]:
    prompt: dict[str, Any] = {}
    for node in workflow.nodes:
        spec = NODE_TYPES[node.type]
        inputs: dict[str, Any] = {}
        for socket in spec.sockets:
            if socket.name in node.links:
                origin, slot = node.links[socket.name]
                inputs[socket.name] = [str(origin), slot]
        for name in spec.widgets:
            if name in node.links:
                origin, slot = node.links[name]
                inputs[name] = [str(origin), slot]
            elif name not in (CONTROL, UPLOAD):
                inputs[name] = node.widgets[name]
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title}}
    return prompt


# --------------------------------------------------------------------------------------------------
# Pictures (drawn, so that the pack ships no third-party images)
# --------------------------------------------------------------------------------------------------

PICTURE_SIZE = (512, 320)


def draw_picture(sun_height: float) -> np.ndarray:
    """A sunset over the sea, ``uint8 [H, W, 3]``; ``sun_height`` 1 = high in the sky, 0 = on the horizon."""
    width, height = PICTURE_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.58 * height
    dusk = 1.0 - sun_height
    t = np.clip(y / horizon, 0, 1)[..., None]
    sky_top = np.array([60 - 30 * dusk, 80 - 50 * dusk, 160 - 60 * dusk], np.float32)
    sky_low = np.array([250, 170 - 60 * dusk, 90 - 40 * dusk], np.float32)
    sky = sky_top * (1 - t) + sky_low * t
    sun_x, sun_y, radius = 0.62 * width, horizon - (0.08 + 0.32 * sun_height) * height, 0.07 * width
    dist = np.hypot(x - sun_x, y - sun_y)
    glow = np.exp(-((dist / (radius * 3.5)) ** 2))[..., None]
    sky = sky + glow * np.array([60, 40, 10], np.float32)
    sun = (dist < radius)[..., None]
    sky = np.where(sun, np.array([255, 236 - 40 * dusk, 170 - 80 * dusk], np.float32), sky)
    depth = np.clip((y - horizon) / (height - horizon), 0, 1)[..., None]
    sea = np.array([40, 60, 110], np.float32) * (1 - depth) + np.array([12, 22, 50], np.float32) * depth
    waves = 0.5 + 0.5 * np.sin(x / 9.0 + 0.35 * y + 3.0 * np.sin(y / 7.0))
    path = np.exp(-(((x - sun_x) / (width * 0.06 * (1 + 2 * depth[..., 0]))) ** 2))
    sea = sea + (waves * path)[..., None] * np.array([150, 100, 40], np.float32) * (0.4 + 0.6 * sun_height)
    image = np.where((y >= horizon)[..., None], sea, sky)
    island = (y > horizon - 38 * np.exp(-(((x - 0.18 * width) / (0.09 * width)) ** 2))) & (y < horizon + 2)
    image = np.where(island[..., None], np.array([25, 20, 35], np.float32), image)
    return np.clip(image, 0, 255).astype(np.uint8)


PICTURES: dict[str, Callable[[], np.ndarray]] = {
    START_PICTURE: lambda: draw_picture(1.0),
    MIDDLE_PICTURE: lambda: draw_picture(0.55),
    END_PICTURE: lambda: draw_picture(0.15),
}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(workflow: Workflow) -> np.ndarray:
    """The template browser's picture: the example picture cropped to the video's shape (start | end)."""
    node = next((n for n in workflow.nodes if n.id == CONDITIONING), None)
    width, height = workflow.size or (node.widgets["width"], node.widgets["height"])
    names = list(workflow.pictures) or ([START_PICTURE, END_PICTURE] if "end_image" in node.links else [START_PICTURE])
    tiles = [_crop(PICTURES[name](), width / height) for name in names]
    joined = np.concatenate(tiles, axis=1)
    image = Image.fromarray(joined)
    image.thumbnail((400, 300), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _crop(pixels: np.ndarray, aspect: float) -> np.ndarray:
    height, width = pixels.shape[:2]
    if width / height > aspect:
        keep = round(height * aspect)
        left = (width - keep) // 2
        return pixels[:, left:left + keep]
    keep = round(width / aspect)
    top = (height - keep) // 2
    return pixels[top:top + keep]


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def json_files() -> dict[str, str]:
    """Relative path -> text of every generated JSON file."""
    cnr_id = pack_id()
    files: dict[str, str] = {}
    for workflow in workflows():
        files[f"{workflow.name}.json"] = to_json(ui_format(workflow, cnr_id))
        files[f"{API_DIR}/{workflow.name}.json"] = to_json(api_format(workflow))
    return files


def picture_files() -> dict[str, np.ndarray]:
    """Relative path -> pixels of every generated picture (inputs as PNG, thumbnails as JPEG)."""
    files = {f"{INPUT_DIR}/{name}": draw() for name, draw in PICTURES.items()}
    files.update({f"{workflow.name}.jpg": thumbnail(workflow) for workflow in workflows()})
    return files


def encode_picture(path: str, pixels: np.ndarray) -> bytes:
    return _png(pixels) if path.endswith(".png") else _jpeg(pixels)


def write_all(root: Path = HERE) -> list[Path]:
    written = []
    for relative, text in json_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for relative, pixels in picture_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_picture(relative, pixels))
        written.append(path)
    return written


def stale_files(root: Path = HERE) -> list[str]:
    """Generated JSON files whose committed text differs (pictures are compared by pixels in the tests)."""
    stale = []
    for relative, text in json_files().items():
        path = root / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(relative)
    stale += [relative for relative in picture_files() if not (root / relative).is_file()]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = stale_files()
        for relative in stale:
            log.error("out of date: workflows/%s (run python workflows/generate.py)", relative)
        return 1 if stale else 0
    for path in write_all():
        log.info("wrote %s", path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
