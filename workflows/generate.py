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
        (*_CONDITIONING_SOCKETS, Socket("image", "IMAGE")), _VIDEO_WIDGETS, _CONDITIONING_OUTPUTS, ours=True),
    "DynamiCrafterInterpolation": NodeType(
        (*_CONDITIONING_SOCKETS, Socket("start_image", "IMAGE"), Socket("end_image", "IMAGE", optional=True)),
        ("mode", *_VIDEO_WIDGETS), _CONDITIONING_OUTPUTS, ours=True),
    "DynamiCrafterSampler": NodeType(
        (Socket("model", "MODEL"), Socket("positive", "CONDITIONING"), Socket("negative", "CONDITIONING"),
         Socket("latent", "LATENT")),
        ("seed", CONTROL, "steps", "cfg", "eta", "guidance_rescale", "spacing", "dynamic_rescale"),
        (("latent", "LATENT"),), ours=True),
    "CLIPTextEncode": NodeType((Socket("clip", "CLIP"),), ("text",), (("CONDITIONING", "CONDITIONING"),)),
    "LoadImage": NodeType((), ("image", UPLOAD), (("IMAGE", "IMAGE"), ("MASK", "MASK"))),
    "VAEDecode": NodeType((Socket("samples", "LATENT"), Socket("vae", "VAE")), (), (("IMAGE", "IMAGE"),)),
    "ImageFromBatch": NodeType((Socket("image", "IMAGE"),), ("batch_index", "length"), (("IMAGE", "IMAGE"),)),
    "CreateVideo": NodeType((Socket("images", "IMAGE"), Socket("audio", "AUDIO", optional=True)), ("fps",),
                            (("VIDEO", "VIDEO"),)),
    "SaveVideo": NodeType((Socket("video", "VIDEO"),), ("filename_prefix", "format", "codec"), ()),
}
NOTE_TYPE = "MarkdownNote"
"""The frontend's own note node (not a backend node: it is left out of the API format)."""

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


def model_download(variant: Variant) -> dict[str, str]:
    """The frontend's download hint: the original file, saved under the name the workflow loads."""
    return {"name": variant.ckpt_name, "url": f"https://huggingface.co/{variant.hf_repo}/resolve/main/model.ckpt",
            "directory": "checkpoints"}


POSITIVE_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")
NOTE_COLOR = ("#432", "#653")

# Node ids, shared by every workflow (batch scripts can patch e.g. node 6's seed in any of them).
LOADER, POSITIVE, NEGATIVE, IMAGE, CONDITIONING, SAMPLER, DECODE, VIDEO, SAVE, END_IMAGE, TRIM, NOTE = range(1, 13)


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
        Node(SAMPLER, "DynamiCrafterSampler", "DynamiCrafter Sampler", (1290, 0), (340, 330),
             {"seed": 123, CONTROL: "fixed", "steps": 50, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0,
              "spacing": "auto", "dynamic_rescale": "auto"},
             {"model": (LOADER, 0), "positive": (CONDITIONING, 0), "negative": (CONDITIONING, 1),
              "latent": (CONDITIONING, 2)}),
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
                 "batch_size": 1, "fit": "crop"},
                {"positive": (POSITIVE, 0), "negative": (NEGATIVE, 0), "vae": (LOADER, 2),
                 "clip_vision": (LOADER, 3), "image": (IMAGE, 0)})


def _interp_conditioning(variant: Variant, mode: str) -> Node:
    links = {"positive": (POSITIVE, 0), "negative": (NEGATIVE, 0), "vae": (LOADER, 2), "clip_vision": (LOADER, 3),
             "start_image": (IMAGE, 0)}
    if mode == "interpolate":
        links["end_image"] = (END_IMAGE, 0)
    return Node(CONDITIONING, "DynamiCrafterInterpolation", "DynamiCrafter Interpolate / Loop", (900, 0), (340, 340),
                {"mode": mode, "width": variant.width, "height": variant.height, "frames": FRAMES, "fs": variant.fs,
                 "batch_size": 1, "fit": "crop"}, links)


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


WORKFLOWS: tuple[Callable[[], Workflow], ...] = (
    lambda: image_to_video("256"),
    lambda: image_to_video("512"),
    lambda: image_to_video("1024"),
    interpolation,
    loop,
)


def workflows() -> list[Workflow]:
    return [make() for make in WORKFLOWS]


# --------------------------------------------------------------------------------------------------
# The note: every widget in plain words
# --------------------------------------------------------------------------------------------------


def _widget_label(name: str) -> str:
    return {CONTROL: "control after generate", UPLOAD: "upload"}.get(name, name)


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    return f"`{value}`"


def note_text(workflow: Workflow) -> str:
    loader = next(n for n in workflow.nodes if n.type == "DynamiCrafterCheckpointLoader")
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
        "## Settings, node by node",
    ]
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
    return table


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
        inputs.update({name: node.widgets[name] for name in spec.widgets if name not in (CONTROL, UPLOAD)})
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
    END_PICTURE: lambda: draw_picture(0.15),
}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(workflow: Workflow) -> np.ndarray:
    """The template browser's picture: the example picture cropped to the video's shape (start | end)."""
    node = next(n for n in workflow.nodes if n.id == CONDITIONING)
    width, height = node.widgets["width"], node.widgets["height"]
    names = [START_PICTURE, END_PICTURE] if "end_image" in node.links else [START_PICTURE]
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
