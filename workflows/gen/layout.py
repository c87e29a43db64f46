"""Every node type the workflows use: its sockets, widgets, outputs, defaults and help, in the frontend's order.

The pack's own nodes are read from their schemas (``GET /object_info``, as the frontend gets them), so an input
renamed, added or re-described in a node's file reaches the workflows and the README by regeneration alone.
The stock nodes' layouts are the pinned ComfyUI's (``tests/host/workflows/test_shipped.py`` checks them against it).

The UI format stores widget values by position, in the order the frontend builds a node's widgets: the node's
inputs in ``input_order`` (required, then optional), one value per widget input, plus an extra "control after
generate" value after a seed and an "image" value for the upload button of Load Image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from . import host

CONTROL = "control_after_generate"
"""Marker in a widget layout: the frontend's extra "control after generate" widget after a seed."""
UPLOAD = "upload"
"""Marker in a widget layout: Load Image's upload button (saved as the value "image")."""
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})

FRONTEND_HELP = {
    CONTROL: "what happens to the seed after each run: `fixed` keeps it, `randomize` picks a new one, "
    "`increment` / `decrement` step it.",
    UPLOAD: "the *choose file to upload* button puts a picture of yours into the `input` folder.",
}
"""Help for the widgets the frontend adds by itself."""


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
    defaults: dict[str, Any] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)
    """Plain-words help per widget (the pack's tooltips; the workflow notes are written from it)."""
    display_name: str = ""
    description: str = ""
    category: str = ""


def node_type_from_info(info: dict[str, Any]) -> NodeType:
    """The frontend's layout of a node from its ``/object_info`` entry (``getOrderedInputSpecs``)."""
    sockets: list[Socket] = []
    widgets: list[str] = []
    defaults: dict[str, Any] = {}
    help_texts: dict[str, str] = {}
    for category in ("required", "optional"):
        specs = info["input"].get(category) or {}
        for name in info["input_order"].get(category, []):
            kind, options = specs[name][0], (specs[name][1] if len(specs[name]) > 1 else {})
            kind = "COMBO" if isinstance(kind, list) else kind
            if kind not in WIDGET_TYPES or options.get("forceInput"):
                sockets.append(Socket(name, kind, optional=category == "optional"))
                continue
            widgets.append(name)
            if "default" in options:
                defaults[name] = options["default"]
            if options.get("tooltip"):
                help_texts[name] = options["tooltip"]
            if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
                widgets.append(CONTROL)
                defaults[CONTROL] = "fixed"
                help_texts[CONTROL] = FRONTEND_HELP[CONTROL]
    return NodeType(
        tuple(sockets),
        tuple(widgets),
        tuple(zip(info["output_name"], info["output"])),
        ours=True,
        defaults=defaults,
        help=help_texts,
        display_name=info.get("display_name") or info["name"],
        description=info.get("description") or "",
        category=info.get("category") or "",
    )


STOCK_TYPES: dict[str, NodeType] = {
    "CLIPTextEncode": NodeType(
        (Socket("clip", "CLIP"),),
        ("text",),
        (("CONDITIONING", "CONDITIONING"),),
        help={"text": "the words the text encoder reads."},
    ),
    "LoadImage": NodeType(
        (),
        ("image", UPLOAD),
        (("IMAGE", "IMAGE"), ("MASK", "MASK")),
        defaults={UPLOAD: "image"},
        help={
            "image": "the picture to animate, from ComfyUI's `input` folder. Any size works: it "
            "is fitted to the video size.",
            UPLOAD: FRONTEND_HELP[UPLOAD],
        },
    ),
    "VAEDecode": NodeType((Socket("samples", "LATENT"), Socket("vae", "VAE")), (), (("IMAGE", "IMAGE"),)),
    "ImageFromBatch": NodeType(
        (Socket("image", "IMAGE"),),
        ("batch_index", "length"),
        (("IMAGE", "IMAGE"),),
        help={
            "batch_index": "the first frame to keep (0 = from the start).",
            "length": "how many frames to keep: 15 drops the last frame, which repeats the first one, so the clip "
            "loops without a stutter.",
        },
    ),
    "CreateVideo": NodeType(
        (Socket("images", "IMAGE"), Socket("audio", "AUDIO", optional=True)),
        ("fps",),
        (("VIDEO", "VIDEO"),),
        help={"fps": "playback speed of the saved video in frames per second (the original saves at 8)."},
    ),
    "SaveVideo": NodeType(
        (Socket("video", "VIDEO"),),
        ("filename_prefix", "format", "codec"),
        (),
        help={
            "filename_prefix": "where the video goes inside ComfyUI's `output` folder, and the start of its name.",
            "format": "the file format (`mp4`).",
            "codec": "the video codec (`h264` plays almost everywhere).",
        },
    ),
    "ImageBatch": NodeType((Socket("image1", "IMAGE"), Socket("image2", "IMAGE")), (), (("IMAGE", "IMAGE"),)),
    "ControlNetLoader": NodeType(
        (),
        ("control_net_name",),
        (("CONTROL_NET", "CONTROL_NET"),),
        help={
            "control_net_name": "the ControlNet file, from `ComfyUI/models/controlnet`: one made for Stable "
            "Diffusion 2.x (SD 2.1), whose layout DynamiCrafter's UNet shares; SD 1.5 and SDXL ControlNets do not fit."
        },
    ),
    "ControlNetApplyAdvanced": NodeType(
        (
            Socket("positive", "CONDITIONING"),
            Socket("negative", "CONDITIONING"),
            Socket("control_net", "CONTROL_NET"),
            Socket("image", "IMAGE"),
            Socket("vae", "VAE", optional=True),
        ),
        ("strength", "start_percent", "end_percent"),
        (("positive", "CONDITIONING"), ("negative", "CONDITIONING")),
        defaults={"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0},
        help={
            "strength": "how strongly the hint steers every frame (0 = not at all, 1 = as trained; lower it when "
            "the video stiffens or loses its motion).",
            "start_percent": "when, as a share of the sampling steps, the ControlNet starts steering (0 = from the "
            "first step).",
            "end_percent": "when it stops (1 = to the last step; e.g. 0.5 fixes the layout early and leaves the "
            "details and the motion to DynamiCrafter).",
        },
    ),
    "LoraLoaderModelOnly": NodeType(
        (Socket("model", "MODEL"),),
        ("lora_name", "strength_model"),
        (("MODEL", "MODEL"),),
        defaults={"strength_model": 1.0},
        help={
            "lora_name": "the LoRA file, from `ComfyUI/models/loras`: one trained on the DynamiCrafter UNet "
            "(LoRAs for SD 1.5, SDXL or SD 2.x image models change other layers and do not fit).",
            "strength_model": "how much of the LoRA is added to the model's weights (1 = as trained, 0 = none; "
            "negative values push the other way).",
        },
    ),
}
"""The stock nodes the workflows use, as the pinned ComfyUI defines them."""
VIDEO_STOCK_TYPES: dict[str, NodeType] = {
    "LoadVideo": NodeType(
        (),
        ("file", UPLOAD),
        (("VIDEO", "VIDEO"),),
        defaults={UPLOAD: "image"},  # the frontend's upload button for videos is Load Image's, saved the same way
        help={
            "file": "the video, from ComfyUI's `input` folder (any size and length: the frames are cut and fitted "
            "below).",
            UPLOAD: "the *choose file to upload* button puts a video of yours into the `input` folder.",
        },
    ),
    "GetVideoComponents": NodeType(
        (Socket("video", "VIDEO"),), (), (("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"))
    ),
    "ImageScale": NodeType(
        (Socket("image", "IMAGE"),),
        ("upscale_method", "width", "height", "crop"),
        (("IMAGE", "IMAGE"),),
        help={
            "upscale_method": "how the pixels are resized (`lanczos` is sharp; `area` is good for shrinking).",
            "width": "the video width: keep it equal to the DynamiCrafter conditioning node's width.",
            "height": "the video height: keep it equal to the DynamiCrafter conditioning node's height.",
            "crop": "`center` cuts the middle out of a picture of another shape (as the conditioning node's `fit` "
            "crop does); `disabled` stretches it.",
        },
    ),
    "VAEEncode": NodeType((Socket("pixels", "IMAGE"), Socket("vae", "VAE")), (), (("LATENT", "LATENT"),)),
    "RandomNoise": NodeType(
        (),
        ("noise_seed", CONTROL),
        (("NOISE", "NOISE"),),
        defaults={"noise_seed": 0, CONTROL: "fixed"},
        help={"noise_seed": "random seed of the start noise.", CONTROL: FRONTEND_HELP[CONTROL]},
    ),
    "SamplerCustomAdvanced": NodeType(
        (
            Socket("noise", "NOISE"),
            Socket("guider", "GUIDER"),
            Socket("sampler", "SAMPLER"),
            Socket("sigmas", "SIGMAS"),
            Socket("latent_image", "LATENT"),
        ),
        (),
        (("output", "LATENT"), ("denoised_output", "LATENT")),
    ),
    "RepeatLatentBatch": NodeType(
        (Socket("samples", "LATENT"),),
        ("amount",),
        (("LATENT", "LATENT"),),
        help={"amount": "how many copies: one per frame (the conditioning node's frames)."},
    ),
}
"""The stock nodes of the sampler-control workflows: a video's frames or a picture as the start latent, and
SamplerCustomAdvanced with its noise."""

TRAINING_STOCK_TYPES: dict[str, NodeType] = {
    "LoraModelLoader": NodeType(
        (Socket("model", "MODEL"), Socket("lora", "LORA_MODEL")),
        ("strength_model", "bypass"),
        (("model", "MODEL"),),
        defaults={"strength_model": 1.0, "bypass": False},
        help={
            "strength_model": "how much of the trained LoRA is added (1 = as trained, 0 = none).",
            "bypass": "apply the LoRA as an extra path instead of changing the weights (for quantized weights).",
        },
    ),
    "SaveLoRA": NodeType(
        (Socket("lora", "LORA_MODEL"),),
        ("prefix", "steps"),
        (),
        defaults={"prefix": "loras/ComfyUI_trained_lora", "steps": 0},
        help={
            "prefix": "where a copy of the LoRA goes, inside ComfyUI's `output` folder.",
            "steps": "the steps it was trained for, part of the file name (from the train node).",
        },
    ),
    "LossGraphNode": NodeType(
        (Socket("loss", "LOSS_MAP"),),
        ("filename_prefix",),
        (),
        defaults={"filename_prefix": "loss_graph"},
        help={"filename_prefix": "name of the loss-per-step picture."},
    ),
}
"""The host's training nodes the workflow uses (checked against the pinned ComfyUI with the other stock types)."""


@functools.cache
def node_types() -> dict[str, NodeType]:
    """Every node type: the pack's from their schemas (imports the pack with ComfyUI), then the stock ones."""
    types = {node_id: node_type_from_info(info) for node_id, info in host.pack_node_infos().items()}
    return {**types, **STOCK_TYPES, **VIDEO_STOCK_TYPES, **TRAINING_STOCK_TYPES}


def node_type(name: str) -> NodeType:
    try:
        return node_types()[name]
    except KeyError:
        raise ValueError(
            f"no node type {name!r}: not a node of the pack nor a stock node the generator knows"
        ) from None
