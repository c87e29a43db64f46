"""Image-to-video conditioning, following the host's SVD/Wan conditioning-node pattern."""

from __future__ import annotations

import weakref

import comfy.model_management as mm
import node_helpers
import torch
from comfy_api.latest import io

from ..dynamicrafter.config import VARIANTS
from ..dynamicrafter.frames import Task, concat_latent, fold_frames
from ..dynamicrafter.image import fit_image
from ..dynamicrafter.image_controls import TOKEN_SCHEDULES, TokenSchedule, augment, end_token_weights
from .adapter.encoders import image_tokens, unconditional_image
from .adapter.family import (
    COND_CONCAT,
    COND_END_IMAGE_TOKENS,
    COND_END_WEIGHTS,
    COND_FRAMES,
    COND_FS,
    COND_IMAGE_TOKENS,
    COND_TASK,
    FS_AUTO,
)
from .adapter.inputs import CATEGORY, FRAMES_MAX
from .adapter.validation import GRID, CheckedNode, size_problem


def check_size(width: int, height: int) -> None:
    problem = size_problem(width, height)
    if problem:
        raise ValueError(problem)


_UNCOND_TOKENS: weakref.WeakKeyDictionary[object, torch.Tensor] = weakref.WeakKeyDictionary()


def unconditional_tokens(clip_vision) -> torch.Tensor:
    """CLIP tokens of the mid-gray picture: the same for every run of a CLIP vision model, so kept."""
    tokens = _UNCOND_TOKENS.get(clip_vision)
    if tokens is None:
        tokens = _UNCOND_TOKENS[clip_vision] = image_tokens(clip_vision, unconditional_image(224, 224))
    return tokens


def build_conditioning(
    positive,
    negative,
    vae,
    clip_vision,
    first: torch.Tensor,
    width: int,
    height: int,
    frames: int,
    fs: int,
    batch_size: int,
    fit: str,
    task: Task,
    last: torch.Tensor | None = None,
    tokens: torch.Tensor | None = None,
    augmentation: float = 0.0,
    end_share: float = 0.0,
    end_schedule: TokenSchedule = "constant",
):
    """Positive/negative conditioning and the empty latent for one DynamiCrafter task.

    Both sides carry the SAME image latent; the negative's image tokens come from CLIP vision of a
    uniform mid-gray picture (the original's all-zero image in [-1, 1]). ``tokens``: CLIP tokens to use
    instead of those of ``first`` (a long video re-anchors on its source picture). ``augmentation``: noise
    added to the pictures the VAE and CLIP see; ``end_share``: how much of ``last``'s image tokens each frame
    sees (``end_token_weights``).
    """
    check_size(width, height)
    fitted = lambda image: augment(fit_image(image[:1, :, :, :3], width, height, fit), augmentation)  # noqa: E731
    first_px = fitted(first)
    last_px = fitted(last) if last is not None else None
    first_latent = vae.encode(first_px)  # [1, 4, h, w], unscaled, as the host's VAE returns it
    last_latent = vae.encode(last_px) if last_px is not None else None
    concat = concat_latent(first_latent, frames, task, last_latent)  # [1, 4, T, h, w]
    concat = fold_frames(concat)  # frames as batch: [T, 4, h, w]
    if tokens is None:
        tokens = image_tokens(clip_vision, first_px)
    uncond_tokens = unconditional_tokens(clip_vision)
    shared = {COND_CONCAT: concat, COND_FRAMES: frames, COND_FS: fs, COND_TASK: task}
    if end_share > 0:
        if last_px is None:
            raise ValueError("blending in the end picture's image tokens needs an end picture (interpolation)")
        positive = node_helpers.conditioning_set_values(
            positive,
            {
                COND_END_IMAGE_TOKENS: image_tokens(clip_vision, last_px),
                COND_END_WEIGHTS: end_token_weights(frames, end_share, end_schedule),
            },
        )
    positive = node_helpers.conditioning_set_values(positive, {**shared, COND_IMAGE_TOKENS: tokens})
    negative = node_helpers.conditioning_set_values(negative, {**shared, COND_IMAGE_TOKENS: uncond_tokens})
    latent = torch.zeros([batch_size * frames, 4, height // 8, width // 8], device=mm.intermediate_device())
    return positive, negative, {"samples": latent}


def _per_variant(side: str) -> str:
    return ", ".join(f"{getattr(v, side)} for {v.name}" for v in VARIANTS.values())


def _fs_tooltip() -> str:
    fps = [v for v in VARIANTS.values() if v.fs_meaning == "fps"]
    stride = [v for v in VARIANTS.values() if v.fs_meaning == "frame_stride"]
    return (
        f"Motion control. 0 = the model's default. {'/'.join(v.name for v in fps)} read it as frames per second "
        f"(smaller = more motion; {', '.join(f'{v.name}: {v.default_fs}' for v in fps)}); "
        f"{'/'.join(v.name for v in stride)} reads it as frame stride (larger = more motion; default "
        f"{', '.join(str(v.default_fs) for v in stride)})."
    )


FS_TOOLTIP = _fs_tooltip()
INTERP_FS_TOOLTIP = (
    "Motion control as frames per second (smaller = more motion). 0 = the interpolation model's "
    f"default, {VARIANTS['512_interp'].default_fs}, as the original's interpolation and loop scripts "
    "use."
)
FIT_INPUT = io.Combo.Input(
    "fit",
    options=["crop", "pad"],
    default="crop",
    tooltip="How a picture of another shape fits the frame: crop the centre, or pad with black.",
)
FRAMES_TOOLTIP = "Frames to generate. The models were trained on 16; per-frame image guidance needs 16."
AUGMENTATION_TOOLTIP = (
    "Noise added to the picture before it is encoded (0 = none, the original). A little "
    "(0.02-0.1) loosens the video's hold on the picture: more motion, less exact likeness."
)
END_TOKENS_TOOLTIP = (
    "How much of the END picture's CLIP image tokens the frames see (0 = the start picture's only, "
    "the original). Helps when start and end differ a lot. Interpolation only."
)
END_SCHEDULE_TOOLTIP = (
    "constant: every frame sees that share of the end picture's tokens. ramp: none on the first "
    "frame, rising to that share on the last."
)


def augmentation_input(tooltip: str = AUGMENTATION_TOOLTIP) -> io.Float.Input:
    return io.Float.Input(
        "noise_augmentation", default=0.0, min=0.0, max=1.0, step=0.01, optional=True, tooltip=tooltip
    )


def end_token_inputs(share_tooltip: str = END_TOKENS_TOOLTIP) -> list:
    """end_image_tokens and end_token_schedule: the end picture's share of each frame's image tokens."""
    return [
        io.Float.Input(
            "end_image_tokens", default=0.0, min=0.0, max=1.0, step=0.05, optional=True, tooltip=share_tooltip
        ),
        io.Combo.Input(
            "end_token_schedule",
            options=list(TOKEN_SCHEDULES),
            default="constant",
            optional=True,
            tooltip=END_SCHEDULE_TOOLTIP,
        ),
    ]


def size_inputs() -> list:
    """width and height, on the UNet's 64-pixel grid; the tooltips list every variant's own size."""
    return [
        io.Int.Input(
            "width",
            default=512,
            min=GRID,
            max=4096,
            step=GRID,
            tooltip=f"Video width in pixels: {_per_variant('width')}.",
        ),
        io.Int.Input(
            "height",
            default=320,
            min=GRID,
            max=4096,
            step=GRID,
            tooltip=f"Video height in pixels: {_per_variant('height')}.",
        ),
    ]


def frames_input(name: str = "frames", tooltip: str = FRAMES_TOOLTIP) -> io.Int.Input:
    return io.Int.Input(name, default=16, min=2, max=FRAMES_MAX, tooltip=tooltip)


def fs_input(tooltip: str) -> io.Int.Input:
    return io.Int.Input("fs", default=FS_AUTO, min=0, max=60, tooltip=tooltip)


def common_inputs(default_fs_tooltip: str) -> list:
    return [
        *size_inputs(),
        frames_input(),
        fs_input(default_fs_tooltip),
        io.Int.Input("batch_size", default=1, min=1, max=16, tooltip="How many videos to make at once."),
        FIT_INPUT,
    ]


CONDITIONING_IO = [
    io.Conditioning.Input("positive", tooltip="The prompt, from CLIP Text Encode with the DynamiCrafter CLIP."),
    io.Conditioning.Input("negative", tooltip="The negative prompt; the original uses an empty one."),
    io.Vae.Input("vae", tooltip="The VAE from the DynamiCrafter loader."),
    io.ClipVision.Input(
        "clip_vision", tooltip="The CLIP vision model (ViT-H/14) from the loader or 'Load CLIP Vision'."
    ),
]
CONDITIONING_OUTPUTS = [
    io.Conditioning.Output(display_name="positive"),
    io.Conditioning.Output(display_name="negative"),
    io.Latent.Output(display_name="latent", tooltip="Empty video latent (frames folded into the batch)."),
]


class DynamiCrafterImageToVideo(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterImageToVideo",
            display_name="DynamiCrafter Image To Video",
            category=f"{CATEGORY}/conditioning",
            description="Animates one picture: the image goes to every frame's latent and to the image tokens.",
            inputs=[
                *CONDITIONING_IO,
                io.Image.Input("image", tooltip="The picture to animate (any size; fitted to width x height)."),
                *common_inputs(FS_TOOLTIP),
                augmentation_input(),
            ],
            outputs=CONDITIONING_OUTPUTS,
        )

    @classmethod
    def execute(
        cls,
        positive,
        negative,
        vae,
        clip_vision,
        image,
        width,
        height,
        frames,
        fs,
        batch_size,
        fit,
        noise_augmentation=0.0,
    ) -> io.NodeOutput:
        return io.NodeOutput(
            *build_conditioning(
                positive,
                negative,
                vae,
                clip_vision,
                image,
                width,
                height,
                frames,
                fs,
                batch_size,
                fit,
                "i2v",
                augmentation=noise_augmentation,
            )
        )


class DynamiCrafterInterpolation(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterInterpolation",
            display_name="DynamiCrafter Interpolate / Loop",
            category=f"{CATEGORY}/conditioning",
            description="For the 512_interp model: fills the frames between a start and an end picture, or makes a "
            "seamless loop from one picture (then drop the repeated last frame with the stock 'ImageFromBatch', "
            "length frames - 1).",
            inputs=[
                *CONDITIONING_IO,
                io.Image.Input("start_image", tooltip="The first frame."),
                io.Combo.Input(
                    "mode",
                    options=["interpolate", "loop"],
                    default="interpolate",
                    tooltip="interpolate: start -> end. loop: the start picture at both ends.",
                ),
                io.Image.Input("end_image", optional=True, tooltip="The last frame (interpolate). Not used for loop."),
                *common_inputs(INTERP_FS_TOOLTIP),
                augmentation_input(),
                *end_token_inputs(),
            ],
            outputs=CONDITIONING_OUTPUTS,
        )

    @classmethod
    def execute(
        cls,
        positive,
        negative,
        vae,
        clip_vision,
        start_image,
        mode,
        width,
        height,
        frames,
        fs,
        batch_size,
        fit,
        end_image=None,
        noise_augmentation=0.0,
        end_image_tokens=0.0,
        end_token_schedule="constant",
    ) -> io.NodeOutput:
        if mode == "interpolate" and end_image is None:
            raise ValueError("interpolation needs an end_image; connect one, or choose mode 'loop'")
        task: Task = "loop" if mode == "loop" else "interp"
        return io.NodeOutput(
            *build_conditioning(
                positive,
                negative,
                vae,
                clip_vision,
                start_image,
                width,
                height,
                frames,
                fs,
                batch_size,
                fit,
                task,
                None if task == "loop" else end_image,
                augmentation=noise_augmentation,
                end_share=end_image_tokens if task == "interp" else 0.0,
                end_schedule=end_token_schedule,
            )
        )


NODES = [DynamiCrafterImageToVideo, DynamiCrafterInterpolation]
