"""The nodes several workflows share: loader, prompts, pictures, sampler, decode and video output."""

from __future__ import annotations

from typing import Any

from .graph import (
    BATCH_ALL,
    BATCH_FIRST,
    CONDITIONING,
    DECODE,
    DESCRIBE,
    DIRECTOR,
    END_IMAGE,
    IMAGE,
    LOADER,
    MIDDLE_IMAGE,
    NEGATIVE,
    NEGATIVE_COLOR,
    POSITIVE,
    POSITIVE_COLOR,
    SAMPLER,
    SAVE,
    SOUNDTRACK,
    VIDEO,
    Link,
    Node,
)
from .host import variants

I2V_PROMPT = "sunset over a calm sea, gentle waves rolling toward the shore, clouds drifting slowly"
START_PICTURE = "dynamicrafter_start.png"
END_PICTURE = "dynamicrafter_end.png"
MIDDLE_PICTURE = "dynamicrafter_middle.png"  # the keyframe between the two, same size
LINES_PICTURE = "dynamicrafter_lines.png"  # the start picture's outlines: a ControlNet hint (white lines on black)
RESTYLE_PICTURE = "dynamicrafter_start_blue.png"  # the start picture at the blue hour: a new look for a video
SOURCE_VIDEO_FILE = "dynamicrafter_sunset.mp4"  # the sun sinking from the start picture to the end picture
VIDEO_FPS = 8.0  # the original scripts save their 16-frame clips at 8 frames per second
FRAMES = 16
MUSIC_FOLDER = "music"
"""ComfyUI's input/music: the Soundtrack node reads only the input folder and folders the admin lists."""
PROMPT_HELP = (
    "what should happen in the video: what moves and how, the camera, the mood. Short, concrete words "
    "work best; the picture already shows what things look like."
)
NEGATIVE_HELP = (
    'what the video should avoid. The original leaves it empty; its "negative picture" is a plain '
    "gray image, added by the DynamiCrafter node by itself."
)


def variant(name: str) -> Any:
    """A row of the pack's variant table (``dynamicrafter/config.py``): size, default fs, file name, repository."""
    return variants()[name]


def model_download(row: Any) -> dict[str, str]:
    """The frontend's download hint: the original file, saved under the name the workflow loads."""
    return {
        "name": row.file_name,
        "url": f"https://huggingface.co/{row.hf_repo}/resolve/main/model.ckpt",
        "directory": "checkpoints",
    }


def loader(row: Any) -> Node:
    return Node(
        LOADER,
        "DynamiCrafterCheckpointLoader",
        "Load DynamiCrafter",
        (0, 0),
        (380, 130),
        {"ckpt_name": row.file_name},
        models=(model_download(row),),
    )


def prompts(prompt: str | None, prompt_help: str = PROMPT_HELP) -> list[Node]:
    """Positive and negative prompt; ``None`` for a positive prompt that comes from the describe node."""
    positive_links: dict[str, Link] = {"clip": (LOADER, 1)}
    if prompt is None:
        positive_links["text"] = (DESCRIBE, 0)
    return [
        Node(
            POSITIVE,
            "CLIPTextEncode",
            "Prompt: the motion you want",
            (430, 0),
            (420, 170),
            {"text": prompt or ""},
            positive_links,
            color=POSITIVE_COLOR,
            help={"text": prompt_help},
        ),
        Node(
            NEGATIVE,
            "CLIPTextEncode",
            "Negative prompt (empty, as in the original)",
            (430, 220),
            (420, 120),
            {"text": ""},
            {"clip": (LOADER, 1)},
            color=NEGATIVE_COLOR,
            help={"text": NEGATIVE_HELP},
        ),
    ]


def picture(node_id: int, title: str, name: str, y: int) -> Node:
    return Node(node_id, "LoadImage", title, (0, y), (380, 360), {"image": name})


def sampler(model: Link = (LOADER, 0), positive: Link = (CONDITIONING, 0), negative: Link = (CONDITIONING, 1)) -> Node:
    """The DynamiCrafter Sampler with its own defaults (the original's), fed by the conditioning node (the
    model and the prompts may come through other nodes: a LoRA, a ControlNet)."""
    return Node(
        SAMPLER,
        "DynamiCrafterSampler",
        "DynamiCrafter Sampler",
        (1290, 0),
        (340, 330),
        {},
        {"model": model, "positive": positive, "negative": negative, "latent": (CONDITIONING, 2)},
    )


def vae_decode() -> Node:
    return Node(
        DECODE, "VAEDecode", "Decode frames", (1680, 0), (220, 50), {}, {"samples": (SAMPLER, 0), "vae": (LOADER, 2)}
    )


def conditioning_links(**images: Link) -> dict[str, Link]:
    return {
        "positive": (POSITIVE, 0),
        "negative": (NEGATIVE, 0),
        "vae": (LOADER, 2),
        "clip_vision": (LOADER, 3),
        **images,
    }


def video_size(row: Any) -> dict[str, int]:
    return {"width": row.width, "height": row.height, "fs": row.default_fs}


def i2v_conditioning(row: Any) -> Node:
    return Node(
        CONDITIONING,
        "DynamiCrafterImageToVideo",
        "DynamiCrafter Image To Video",
        (900, 0),
        (340, 310),
        {**video_size(row), "frames": FRAMES},
        conditioning_links(image=(IMAGE, 0)),
    )


def interp_conditioning(
    row: Any, mode: str, title: str = "DynamiCrafter Interpolate / Loop", help: dict[str, str] | None = None
) -> Node:
    links = conditioning_links(start_image=(IMAGE, 0))
    if mode == "interpolate":
        links["end_image"] = (END_IMAGE, 0)
    return Node(
        CONDITIONING,
        "DynamiCrafterInterpolation",
        title,
        (900, 0),
        (340, 340),
        {"mode": mode, **video_size(row), "frames": FRAMES},
        links,
        help=help or {},
    )


def video_out(images: Link, prefix: str, audio: Link | None = None) -> list[Node]:
    links = {"images": images}
    if audio is not None:
        links["audio"] = audio
    return [
        Node(VIDEO, "CreateVideo", "Make video", (1680, 240), (270, 80), {"fps": VIDEO_FPS}, links),
        Node(
            SAVE,
            "SaveVideo",
            "Save video",
            (1990, 0),
            (420, 420),
            {"filename_prefix": prefix, "format": "mp4", "codec": "h264"},
            {"video": (VIDEO, 0)},
        ),
    ]


def keyframes() -> list[Node]:
    """Three pictures of one size, batched in order: start, middle, end."""
    return [
        Node(IMAGE, "LoadImage", "Keyframe 1", (0, 200), (300, 320), {"image": START_PICTURE}),
        Node(MIDDLE_IMAGE, "LoadImage", "Keyframe 2", (0, 560), (300, 320), {"image": MIDDLE_PICTURE}),
        Node(END_IMAGE, "LoadImage", "Keyframe 3", (0, 920), (300, 320), {"image": END_PICTURE}),
        Node(
            BATCH_FIRST,
            "ImageBatch",
            "Keyframes 1 + 2",
            (430, 400),
            (220, 50),
            {},
            {"image1": (IMAGE, 0), "image2": (MIDDLE_IMAGE, 0)},
        ),
        Node(
            BATCH_ALL,
            "ImageBatch",
            "Keyframes 1 + 2 + 3",
            (430, 500),
            (220, 50),
            {},
            {"image1": (BATCH_FIRST, 0), "image2": (END_IMAGE, 0)},
        ),
    ]


def chain(segment_prompts: str | Link) -> Node:
    """The keyframe chain through the three keyframes; the segment prompts typed in, or linked from a node."""
    links: dict[str, Link] = {"model": (LOADER, 0), **conditioning_links(keyframes=(BATCH_ALL, 0)), "clip": (LOADER, 1)}
    widgets: dict[str, Any] = {**video_size(variant("512_interp")), "frames": FRAMES}
    if isinstance(segment_prompts, str):
        widgets["segment_prompts"] = segment_prompts
    else:
        links["segment_prompts"] = segment_prompts
    return Node(
        SAMPLER, "DynamiCrafterKeyframeChain", "DynamiCrafter Keyframe Chain", (900, 0), (340, 520), widgets, links
    )


def director() -> Node:
    return Node(DIRECTOR, "DynamiCrafterDirectorConnection", "Director connection (AI model)", (0, -420), (380, 250))


def soundtrack(description: Link, frames: Link) -> Node:
    return Node(
        SOUNDTRACK,
        "DynamiCrafterDirectorSoundtrack",
        "Director: soundtrack from your music folder",
        (1290, 400),
        (340, 300),
        {"folder": MUSIC_FOLDER, "fps": VIDEO_FPS},
        {"director": (DIRECTOR, 0), "description": description, "frames": frames},
    )
