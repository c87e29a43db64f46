"""The LoRA fine-tuning workflow: a video and its caption in, a LoRA out, then a video sampled with it."""

from __future__ import annotations

from ..builders import (
    I2V_PROMPT,
    SOURCE_VIDEO_FILE,
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
from ..graph import DECODE, IMAGE, LOADER, SOURCE_VIDEO, VIDEO_PARTS, Node, Workflow, sorted_nodes

TRAIN_CLIPS, TRAIN, SAVE_LORA, LOSS_GRAPH, APPLY_LORA = range(50, 55)
"""Node ids of the training workflow (above the shared ids of graph.py)."""
CAPTION = "the sun sinking behind the hills, clouds drifting"
TRAINING_NOTE = (
    "## Fine-tuning\n"
    "*DynamiCrafter Training Clips* cuts the video into 16-frame clips (every *frame_stride*-th frame), fits them "
    "to the video size and encodes them once: VAE latents, the caption, CLIP vision tokens. Batch several videos "
    "of equal length one after another and set *frames_per_video*, with one caption per line; or chain another "
    "Training Clips node through *previous*. *DynamiCrafter Train LoRA* runs the original's training objective "
    "(v-prediction on the zero-SNR schedule, dynamic rescale, 5% text / 5% image / 5% both dropped, a random "
    "conditioning frame) with LoRA adapters on the attention layers and the Resampler, and writes the LoRA into "
    "`models/loras` (`dynamicrafter/trained_lora_<steps>_steps_...`) when it ends or when you press Cancel; pick "
    "that file in *existing_lora* to go on training it, or load it later with the stock *LoraLoaderModelOnly*. "
    "Here it is applied at once (*Load LoRA Model*) to animate the picture. The example video has only 16 frames "
    "at 8 fps: use your own clips (a few seconds each, the motion or style to learn), a few hundred steps, and a "
    "GPU with 24 GB for 512 (gradient checkpointing on)."
)


def train_lora() -> Workflow:
    row = variant("512")
    clips = Node(
        TRAIN_CLIPS,
        "DynamiCrafterTrainingClips",
        "Training clips",
        (430, 560),
        (340, 420),
        {"captions": CAPTION, "variant": row.name, "frame_stride": 1, "width": row.width, "height": row.height},
        {
            "vae": (LOADER, 2),
            "clip": (LOADER, 1),
            "clip_vision": (LOADER, 3),
            "images": (VIDEO_PARTS, 0),
            "fps": (VIDEO_PARTS, 2),
        },
        help={"frame_stride": "take every n-th frame (the example video has just 16 frames: 1)."},
    )
    train = Node(
        TRAIN,
        "DynamiCrafterTrainLoRA",
        "Train LoRA",
        (900, 560),
        (340, 420),
        {},
        {"model": (LOADER, 0), "clips": (TRAIN_CLIPS, 0)},
    )
    nodes = [
        loader(row),
        *prompts(I2V_PROMPT),
        picture(IMAGE, "Picture to animate with the LoRA", START_PICTURE, 200),
        Node(SOURCE_VIDEO, "LoadVideo", "Video to learn from", (0, 600), (380, 400), {"file": SOURCE_VIDEO_FILE}),
        Node(
            VIDEO_PARTS, "GetVideoComponents", "Video frames", (430, 400), (220, 70), {}, {"video": (SOURCE_VIDEO, 0)}
        ),
        clips,
        train,
        Node(
            SAVE_LORA,
            "SaveLoRA",
            "Save a copy of the LoRA",
            (1290, 560),
            (340, 90),
            {"prefix": "loras/dynamicrafter_lora"},
            {"lora": (TRAIN, 0), "steps": (TRAIN, 2)},
        ),
        Node(LOSS_GRAPH, "LossGraphNode", "Loss per step", (1290, 700), (340, 300), {}, {"loss": (TRAIN, 1)}),
        Node(
            APPLY_LORA,
            "LoraModelLoader",
            "Load LoRA Model",
            (900, 380),
            (340, 90),
            {},
            {"model": (LOADER, 0), "lora": (TRAIN, 0)},
        ),
        i2v_conditioning(row),
        sampler(model=(APPLY_LORA, 0)),
        vae_decode(),
        *video_out((DECODE, 0), "DynamiCrafter/trained_lora_512"),
    ]
    return Workflow(
        name="train_lora_512",
        title="DynamiCrafter 512: fine-tune a LoRA on your own video",
        about=(
            "Trains a LoRA on a video and its caption with the original DynamiCrafter training objective, saves "
            f"it, and animates a picture with it ({row.width}x{row.height}, 16 frames)."
        ),
        nodes=sorted_nodes(nodes),
        pictures=(START_PICTURE,),
        extra_notes=(TRAINING_NOTE,),
    )
