"""The ToonCrafter workflow steered by line sketches (ToonCrafter's sketch encoder through the stock ControlNet
loader and the pack's sketch guidance node)."""

from __future__ import annotations

from ..builders import END_PICTURE, FRAMES, LINES_PICTURE, START_PICTURE, sampler, video_out
from ..graph import APPLY_SKETCH, CONDITIONING, DECODE, SKETCH, SKETCH_ENCODER, Node, Workflow, sorted_nodes

SKETCH_ENCODER_FILE = "sketch_encoder.ckpt"
"""ToonCrafter's sketch encoder under its released name (Kijai's ``sketch_encoder-fp16.safetensors`` works too)."""
SKETCH_ENCODER_URL = "https://huggingface.co/Doubiiu/ToonCrafter/resolve/main/sketch_encoder.ckpt"
SKETCH_FRAMES = "8"
SKETCH_NOTE = (
    "## Sketches\n"
    f"Put ToonCrafter's sketch encoder in `ComfyUI/models/controlnet`: `{SKETCH_ENCODER_FILE}` (1.46 GB) from "
    f"[Doubiiu/ToonCrafter]({SKETCH_ENCODER_URL}), or Kijai's `sketch_encoder-fp16.safetensors` (half the size, "
    "the same network) from Kijai/DynamiCrafter_pruned, and pick it in *Load ControlNet Model*. "
    "*ToonCrafter Sketch Guidance* steers the frames listed in its *frames* (counted from 0, in increasing "
    "order) with one line drawing each, the sketches batched in that order; the other frames get no sketch "
    f"guidance. Here one sketch steers frame {SKETCH_FRAMES}, the middle of the {FRAMES}: the example is the start "
    f"picture's outlines (`{LINES_PICTURE}`, "
    "white lines on black, hence *invert* off); draw your own in-between, dark lines on white with *invert* on. "
    "For several frames, batch the sketches (e.g. *Batch Images*) and list the frames, e.g. `4, 8, 12`; or give "
    f"{FRAMES} sketches and leave *frames* empty (the sketch-guidance code's own way: a sketch for every frame, "
    "where a blank one still steers, meaning 'no lines here'). The reference's strength is 0.6."
)


def tooncrafter_sketch(base: Workflow) -> Workflow:
    """``base`` (the ToonCrafter workflow) with the sketch encoder and the sketch guidance between its
    conditioning and its sampler."""
    encoder = Node(
        SKETCH_ENCODER,
        "ControlNetLoader",
        "Load ControlNet Model (ToonCrafter sketch encoder)",
        (430, 400),
        (380, 80),
        {"control_net_name": SKETCH_ENCODER_FILE},
        models=({"name": SKETCH_ENCODER_FILE, "url": SKETCH_ENCODER_URL, "directory": "controlnet"},),
        help={
            "control_net_name": f"ToonCrafter's sketch encoder in `ComfyUI/models/controlnet` ({SKETCH_ENCODER_FILE} "
            "or sketch_encoder-fp16.safetensors)."
        },
    )
    sketch = Node(
        SKETCH,
        "LoadImage",
        f"Sketch for frame {SKETCH_FRAMES}",
        (430, 520),
        (380, 360),
        {"image": LINES_PICTURE},
        help={
            "image": "the line drawing for the listed frame, from ComfyUI's `input` folder (a batch of them for "
            "several frames). Any size works: it is fitted to the video size."
        },
    )
    apply = Node(
        APPLY_SKETCH,
        "DynamiCrafterSketchGuidance",
        "ToonCrafter Sketch Guidance",
        (900, 400),
        (340, 260),
        {"frames": SKETCH_FRAMES, "invert": False},
        {
            "positive": (CONDITIONING, 0),
            "negative": (CONDITIONING, 1),
            "control_net": (SKETCH_ENCODER, 0),
            "sketches": (SKETCH, 0),
        },
    )
    nodes = [n for n in base.nodes if n.type not in ("DynamiCrafterSampler", "CreateVideo", "SaveVideo")]
    nodes += [encoder, sketch, apply, sampler(positive=(APPLY_SKETCH, 0), negative=(APPLY_SKETCH, 1))]
    nodes += video_out((DECODE, 0), "DynamiCrafter/tooncrafter_sketch_512")
    return Workflow(
        name="tooncrafter_sketch_512",
        title="ToonCrafter 512: cartoon interpolation steered by sketches",
        about=(
            f"{base.about} Line sketches for chosen in-between frames steer the motion through ToonCrafter's sketch "
            "encoder; frames without a sketch are left to the model."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE, END_PICTURE, LINES_PICTURE),
        extra_notes=(SKETCH_NOTE,),
    )
