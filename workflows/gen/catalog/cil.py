"""The CIL image-to-video workflow: a CIL ("no watermark") checkpoint with the paper's analytic initial noise."""

from __future__ import annotations

from dataclasses import replace

from ..builders import (
    FRAMES,
    I2V_PROMPT,
    START_PICTURE,
    i2v_conditioning,
    loader,
    picture,
    prompts,
    sampler,
    vae_decode,
    variant,
    video_out,
)
from ..graph import DECODE, IMAGE, Node, Workflow, sorted_nodes

INIT_NOISE = 30
"""Node id of the Analytic Init Noise node (above the shared ids of graph.py)."""
CIL_FILE = "dynamicrafter_cil_512.ckpt"
"""The name the workflow loads: a CIL 512 checkpoint renamed, or any DynamiCrafter 512 file picked in the list."""
STATISTICS_FILE = "initial_noise_512.pt"
"""The reference's statistics file for 512x320 (GraceZhao/DynamiCrafter-Analytic-Init; the name its
``inference_CIL_512.sh`` reads)."""
STATISTICS_URL = f"https://huggingface.co/GraceZhao/DynamiCrafter-Analytic-Init/resolve/main/{STATISTICS_FILE}"
CIL_MODEL_NOTE = (
    f"Put a CIL 512 checkpoint in `ComfyUI/models/checkpoints` and pick it in the loader (the workflow asks for "
    f"`{CIL_FILE}`): the full file of [GraceZhao/DynamiCrafter-CIL-512-no-watermark]"
    "(https://huggingface.co/GraceZhao/DynamiCrafter-CIL-512-no-watermark), renamed. Kijai's pruned copy "
    "`dynamicrafter-CIL-512-no-watermark-fixed-pruned-fp16.safetensors` (the *DynamiCrafter Download Model* node "
    "fetches it) has no CLIP: use *DynamiCrafter Load Model* with the stock *Load CLIP* (type `stable_diffusion`) and "
    "*Load CLIP Vision* (`CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`) instead of the loader here. The original "
    "DynamiCrafter 512 works too.\n\n"
    f"Put the statistics `{STATISTICS_FILE}` of [GraceZhao/DynamiCrafter-Analytic-Init]"
    "(https://huggingface.co/GraceZhao/DynamiCrafter-Analytic-Init) (or Kijai's `initial_noise_512.safetensors`) in "
    "`ComfyUI/models/dynamicrafter_init_noise`. They fit 16 frames at 512x320 only."
)


def cil_image_to_video() -> Workflow:
    row = variant("512")
    init = Node(
        INIT_NOISE,
        "DynamiCrafterAnalyticInit",
        "Analytic initial noise (CIL)",
        (900, 360),
        (340, 110),
        {"statistics": STATISTICS_FILE},
        models=({"name": STATISTICS_FILE, "url": STATISTICS_URL, "directory": "dynamicrafter_init_noise"},),
    )
    nodes = [
        replace(loader(row), title="Load DynamiCrafter CIL 512", widgets={"ckpt_name": CIL_FILE}, models=()),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        i2v_conditioning(row),
        init,
        replace(sampler(), links={**sampler().links, "init_noise": (INIT_NOISE, 0)}),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/cil_i2v_512"),
    ]
    return Workflow(
        name="cil_image_to_video_512",
        title="DynamiCrafter CIL 512: image to video with analytic initial noise",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video with a CIL "
            '(conditional-image-leakage, "no watermark") model: the video starts at step M from the paper\'s '
            "analytic initial noise, for more motion than a start from pure noise."
        ),
        nodes=sorted_nodes(nodes),
        model_note=CIL_MODEL_NOTE,
    )
