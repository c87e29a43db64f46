"""The image-to-video workflows with ComfyUI's own model nodes: a ControlNet, and a LoRA."""

from __future__ import annotations

from ..builders import (
    FRAMES,
    I2V_PROMPT,
    LINES_PICTURE,
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
from ..graph import (
    APPLY_CONTROLNET,
    CONDITIONING,
    CONTROLNET,
    DECODE,
    HINT,
    IMAGE,
    LOADER,
    LORA,
    Node,
    Workflow,
    sorted_nodes,
)

CONTROLNET_FILE = "controlnet_sd21_lineart.safetensors"
"""The name the ControlNet workflow loads: any SD 2.x ControlNet, renamed or picked in the loader's list."""
CONTROLNET_DOWNLOAD = {
    "name": CONTROLNET_FILE,
    "url": "https://huggingface.co/thibaud/controlnet-sd21/resolve/main/lineart-sd21-safe.safetensors",
    "directory": "controlnet",
}
"""The frontend's one-click download: the lineart ControlNet of thibaud/controlnet-sd21, saved under the name the
workflow loads."""
LORA_FILE = "dynamicrafter_512_lora.safetensors"
"""The name the LoRA workflow loads: a LoRA trained on the DynamiCrafter UNet, renamed or picked in the list."""
CONTROLNET_NOTE = (
    "## ControlNet\n"
    f"Put a ControlNet made for Stable Diffusion 2.1 in `ComfyUI/models/controlnet` (e.g. the lineart one of "
    f"thibaud/controlnet-sd21, which the Missing Models list downloads for you as `{CONTROLNET_FILE}`, or a "
    f"canny or depth one) and pick it in *Load ControlNet Model* (the workflow asks for `{CONTROLNET_FILE}`). DynamiCrafter's UNet has SD 2.1's layout, so its guidance lands where SD 2.1 "
    "expects it; SD 1.5 and SDXL ControlNets do not fit. The hint is a picture of the kind the ControlNet was "
    "trained on: here the outlines of the example picture (white lines on black) for a lineart or canny one; "
    "use a depth map for a depth one. One hint steers every frame; a batch of "
    f"{FRAMES} hints (e.g. a preprocessor's output for each frame of a video) steers each frame with its own. "
    "Any size works: the hint is fitted to the video size. The example hint is in this pack's "
    f"`workflows/inputs` folder (`{LINES_PICTURE}`). How well a given ControlNet steers DynamiCrafter's motion "
    "has not been measured with released weights: start with a lower strength or end percent if the video "
    "stiffens."
)
LORA_NOTE = (
    "## LoRA\n"
    f"Put a LoRA trained on the DynamiCrafter UNet in `ComfyUI/models/loras` and pick it in *Load LoRA* (the "
    f"workflow asks for `{LORA_FILE}`). Keys may name the layers as in the original checkpoint "
    "(`model.diffusion_model.input_blocks...`, `image_proj_model...`), with ComfyUI's `diffusion_model.` "
    "prefix, or kohya-style (`lora_unet_input_blocks_...`), in the LoRA formats ComfyUI reads. LoRAs for SD 1.5, "
    "SDXL or SD 2.x image models change other layers and do not fit (ComfyUI logs the keys it did not use). "
    "Chain several *Load LoRA* nodes to combine LoRAs."
)


def controlnet() -> Workflow:
    row = variant("512")
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        i2v_conditioning(row),
        Node(
            CONTROLNET,
            "ControlNetLoader",
            "Load ControlNet Model (SD 2.1)",
            (430, 400),
            (380, 80),
            {"control_net_name": CONTROLNET_FILE},
            models=(CONTROLNET_DOWNLOAD,),
        ),
        Node(
            HINT,
            "LoadImage",
            "ControlNet hint (one, or one per frame)",
            (430, 520),
            (380, 360),
            {"image": LINES_PICTURE},
            help={
                "image": "the hint picture, from ComfyUI's `input` folder: the kind of picture the ControlNet "
                "was trained on (outlines for lineart or canny, a depth map for depth). Any size works."
            },
        ),
        Node(
            APPLY_CONTROLNET,
            "ControlNetApplyAdvanced",
            "Apply ControlNet to every frame",
            (900, 360),
            (340, 190),
            {},
            {
                "positive": (CONDITIONING, 0),
                "negative": (CONDITIONING, 1),
                "control_net": (CONTROLNET, 0),
                "image": (HINT, 0),
            },
        ),
        sampler(positive=(APPLY_CONTROLNET, 0), negative=(APPLY_CONTROLNET, 1)),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/controlnet_512"),
    ]
    return Workflow(
        name="controlnet_512",
        title="DynamiCrafter 512: image to video steered by a ControlNet",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video guided by the prompt "
            "and by an SD 2.1 ControlNet: the stock *Apply ControlNet* adds its guidance to every frame, from one "
            f"hint picture or a batch of {FRAMES} (one per frame)."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE, LINES_PICTURE),
        size=(row.width, row.height),
        extra_notes=(CONTROLNET_NOTE,),
    )


def lora() -> Workflow:
    row = variant("512")
    nodes = [
        loader(row),
        Node(
            LORA,
            "LoraLoaderModelOnly",
            "Load LoRA (DynamiCrafter UNet)",
            (430, 400),
            (380, 110),
            {"lora_name": LORA_FILE},
            {"model": (LOADER, 0)},
        ),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate", START_PICTURE, 200),
        i2v_conditioning(row),
        sampler(model=(LORA, 0)),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/lora_512"),
    ]
    return Workflow(
        name="lora_512",
        title="DynamiCrafter 512: image to video with a LoRA",
        about=(
            f"Animates one picture into a {FRAMES}-frame, {row.width}x{row.height} video guided by the prompt, "
            "with a LoRA for the DynamiCrafter UNet added to the model by the stock *Load LoRA* node."
        ),
        nodes=sorted_nodes(nodes),
        extra_notes=(LORA_NOTE,),
    )
