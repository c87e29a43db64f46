"""The FreeNoise long-video workflow: one 64-frame video in one pass (FreeNoise / LongerCrafter)."""

from __future__ import annotations

from ..builders import I2V_PROMPT, START_PICTURE, loader, picture, prompts, variant, video_out, video_size
from ..graph import IMAGE, LOADER, NEGATIVE, POSITIVE, SAMPLER, Node, Workflow, sorted_nodes

FREENOISE = 44
"""Node id of the DynamiCrafter FreeNoise patch (above the shared ids of graph.py)."""
TOTAL_FRAMES = 64
FREENOISE_NOTE = (
    "## FreeNoise or crossfaded clips\n"
    "*FreeNoise one pass* samples all 64 frames at once: every frame's temporal attention runs in overlapping "
    "16-frame windows (one every 4 frames) whose outputs are fused, and the start noise of later frames is a "
    "shuffle of earlier frames', so the video is one coherent piece of motion with no joins. The *DynamiCrafter "
    "FreeNoise* node sets the window and stride (the FreeNoise paper's 16 and 4); without it the Long Video node "
    "uses those defaults. Memory grows with the frame count (the whole video is in the sampler at once); if it "
    "does not fit, set the Long Video node's *mode* to `continue` (16-frame clips joined by crossfades), which "
    "also suits videos that should change more over time. The *DynamiCrafter FreeNoise* node also works in front "
    "of the DynamiCrafter Sampler or a stock sampler: set the conditioning node's *frames* above 16."
)


def long_video_freenoise() -> Workflow:
    row = variant("512")
    patch = Node(
        FREENOISE,
        "DynamiCrafterFreeNoise",
        "DynamiCrafter FreeNoise",
        (450, 560),
        (340, 110),
        {},
        {"model": (LOADER, 0)},
    )
    node = Node(
        SAMPLER,
        "DynamiCrafterLongVideo",
        "DynamiCrafter Long Video (FreeNoise)",
        (900, 0),
        (340, 560),
        {"total_frames": TOTAL_FRAMES, "mode": "FreeNoise one pass", **video_size(row)},
        {
            "model": (FREENOISE, 0),
            "positive": (POSITIVE, 0),
            "negative": (NEGATIVE, 0),
            "vae": (LOADER, 2),
            "clip_vision": (LOADER, 3),
            "image": (IMAGE, 0),
        },
        help={
            name: "not used by the FreeNoise mode (it samples one pass, no clips)."
            for name in ("overlap", "anchor_tokens", "match_colors", "clip_frames")
        }
        | {"seed": "Random seed of the start noise (and of its FreeNoise shuffle) and of every step's noise."},
    )
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        patch,
        node,
        *video_out((SAMPLER, 0), "DynamiCrafter/long_freenoise_512"),
    ]
    return Workflow(
        name="long_video_freenoise_512",
        title="DynamiCrafter 512: long video in one pass (FreeNoise)",
        about=(
            f"Animates one picture into a {TOTAL_FRAMES}-frame {row.width}x{row.height} video (8 s at 8 fps) in one "
            "sampling pass with FreeNoise (LongerCrafter): overlapping 16-frame attention windows and rescheduled "
            "noise instead of separate clips, so the motion runs on without restarting at joins."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE,),
        size=(row.width, row.height),
        extra_notes=(FREENOISE_NOTE,),
    )
