"""Training clips from ComfyUI's own nodes: frames cut into 16-frame windows, encoded once.

Each window is fitted to the variant's size and encoded once: VAE latents (the host's VAE, its posterior mean),
the caption's text embedding (its first 77 tokens, as the original truncates), CLIP vision tokens of the
frames that can condition (every frame where the variant trains with a random conditioning frame, else
frame 0), and once per set the embedding of ``""`` and the tokens of the all-zero (mid-gray) picture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from comfy_api.latest import io

from ...dynamicrafter.config import VARIANTS
from ...dynamicrafter.image import fit_image
from ...dynamicrafter.training.clips import captions_for, video_windows
from ...dynamicrafter.training.objective import ClipBatch, ObjectiveSettings
from ..adapter.encoders import image_tokens
from ..adapter.inputs import CATEGORY
from ..adapter.validation import CheckedNode, InputError, as_rgb
from ..conditioning import FIT_INPUT, size_inputs, unconditional_tokens

log = logging.getLogger(__name__)

CLIPS_TYPE = io.Custom("DYNAMICRAFTER_TRAINING_CLIPS")
TEXT_TOKENS = 77
CLIP_LENGTH = 16


@dataclass
class TrainingClips:
    """Encoded clips of one variant's size; ``batch`` stacks some of them for a training step."""

    variant: str
    width: int
    height: int
    latents: list[torch.Tensor] = field(default_factory=list)  # [4, T, h, w] each, unscaled (host VAE)
    texts: list[torch.Tensor] = field(default_factory=list)  # [77, C]
    clip_frames: list[torch.Tensor] = field(default_factory=list)  # [F, 257, D]
    fs: list[int] = field(default_factory=list)
    empty_text: torch.Tensor | None = None
    clip_blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.latents)

    def batch(self, indices: list[int], process_latent_in, device, dtype=torch.float32) -> ClipBatch:
        """The clips ``indices`` as one batch; ``process_latent_in`` applies the model's latent scale."""
        stack = lambda items: torch.stack([items[i] for i in indices]).to(device=device, dtype=dtype)  # noqa: E731
        latents = stack(self.latents)
        b, c, t, h, w = latents.shape
        scaled = process_latent_in(latents.transpose(1, 2).reshape(b * t, c, h, w))
        return ClipBatch(
            latents=scaled.reshape(b, t, c, h, w).transpose(1, 2).contiguous(),
            text=stack(self.texts),
            empty_text=self.empty_text.to(device=device, dtype=dtype).clone(),
            clip_frames=stack(self.clip_frames),
            clip_blank=self.clip_blank.to(device=device, dtype=dtype).clone(),
            fs=torch.tensor([self.fs[i] for i in indices], device=device, dtype=torch.long),
        )


@torch.no_grad()
def encode_text(clip, text: str) -> torch.Tensor:
    """The caption's embedding ``[77, C]`` (the first 77 tokens: the original's text length)."""
    cond = clip.encode_from_tokens(clip.tokenize(text))
    return cond[0, :TEXT_TOKENS].float().cpu().clone()


@torch.no_grad()
def add_clips(
    clips: TrainingClips,
    vae,
    clip,
    clip_vision,
    videos: list[torch.Tensor],
    captions: list[str],
    fps: float,
    stride: int,
    fit: str,
    max_clips: int,
) -> TrainingClips:
    """Cut, fit and encode ``videos`` (IMAGE frames each) into ``clips``."""
    variant = VARIANTS[clips.variant]
    all_frames = ObjectiveSettings.for_variant(variant).rand_cond_frame
    captions = captions_for(captions, len(videos))
    windows = [
        w
        for i, v in enumerate(videos)
        for w in video_windows(i, v.shape[0], CLIP_LENGTH, stride, variant.fs_meaning, fps, max_clips)
    ]
    if clips.empty_text is None:
        clips.empty_text = encode_text(clip, "")[None]
        clips.clip_blank = unconditional_tokens(clip_vision).float().cpu()
    texts = {i: encode_text(clip, captions[i]) for i in {w.video for w in windows}}
    for window in windows:
        frames = fit_image(videos[window.video][list(window.frames)], clips.width, clips.height, fit)
        latent = vae.encode(frames[..., :3]).float().cpu()  # [T, 4, h, w]
        tokens = image_tokens(clip_vision, frames if all_frames else frames[:1]).float().cpu()
        clips.latents.append(latent.transpose(0, 1).contiguous())
        clips.texts.append(texts[window.video])
        clips.clip_frames.append(tokens)
        clips.fs.append(window.fs)
    log.info(
        "DynamiCrafter training clips: %d clips from %d videos (%d in the set)", len(windows), len(videos), len(clips)
    )
    return clips


def split_videos(images: torch.Tensor, frames_per_video: int) -> list[torch.Tensor]:
    """The IMAGE batch as videos of ``frames_per_video`` frames (0: one video)."""
    if frames_per_video <= 0:
        return [images]
    if images.shape[0] % frames_per_video:
        raise InputError(
            f"{images.shape[0]} frames do not split into videos of {frames_per_video} frames; set "
            "frames_per_video to each video's length (all the same), or 0 for one video"
        )
    return list(images.split(frames_per_video))


class DynamiCrafterTrainingClips(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterTrainingClips",
            display_name="DynamiCrafter Training Clips",
            category=f"{CATEGORY}/training",
            description="Cuts videos into 16-frame clips at a frame stride and encodes them once for LoRA training.",
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE from the DynamiCrafter loader."),
                io.Clip.Input("clip", tooltip="The text encoder from the DynamiCrafter loader."),
                io.ClipVision.Input("clip_vision", tooltip="The CLIP vision model (ViT-H/14)."),
                io.Image.Input(
                    "images",
                    tooltip="The video frames (e.g. Get Video Components); several videos of "
                    "equal length one after another with frames_per_video.",
                ),
                io.String.Input(
                    "captions",
                    multiline=True,
                    default="",
                    tooltip="One caption per video, one per line; or one line for all videos.",
                ),
                io.Combo.Input(
                    "variant",
                    options=list(VARIANTS),
                    default="512",
                    tooltip="The model to train: decides the fs input and which frames condition.",
                ),
                io.Float.Input(
                    "fps",
                    default=24.0,
                    min=1.0,
                    max=240.0,
                    tooltip="The videos' frame rate (Get Video Components gives it); fs = fps // stride.",
                ),
                io.Int.Input(
                    "frame_stride",
                    default=2,
                    min=1,
                    max=30,
                    tooltip="Take every n-th frame: a clip spans 15 x stride + 1 frames.",
                ),
                io.Int.Input(
                    "frames_per_video",
                    default=0,
                    min=0,
                    max=100000,
                    tooltip="Frames of each video when several are batched; 0: all frames are one video.",
                ),
                io.Int.Input(
                    "max_clips_per_video",
                    default=8,
                    min=0,
                    max=10000,
                    tooltip="At most this many consecutive clips per video (0: all).",
                ),
                *size_inputs(),
                FIT_INPUT,
                CLIPS_TYPE.Input("previous", optional=True, tooltip="Clips to add these to (same variant and size)."),
            ],
            outputs=[CLIPS_TYPE.Output(display_name="clips")],
        )

    @classmethod
    def execute(
        cls,
        vae,
        clip,
        clip_vision,
        images,
        captions,
        variant,
        fps,
        frame_stride,
        frames_per_video,
        max_clips_per_video,
        width,
        height,
        fit,
        previous=None,
    ) -> io.NodeOutput:
        images = as_rgb("images", images)
        lines = [line.strip() for line in captions.splitlines() if line.strip()] or [""]
        if previous is not None and (previous.variant, previous.width, previous.height) != (variant, width, height):
            raise InputError(
                f"the previous clips are {previous.variant} at {previous.width}x{previous.height}, these "
                f"{variant} at {width}x{height}: use the same variant and size"
            )
        clips = TrainingClips(variant, width, height) if previous is None else _copy(previous)
        try:
            add_clips(
                clips,
                vae,
                clip,
                clip_vision,
                split_videos(images, frames_per_video),
                lines,
                fps,
                frame_stride,
                fit,
                max_clips_per_video,
            )
        except ValueError as error:
            raise InputError(str(error)) from error
        return io.NodeOutput(clips)


def _copy(clips: TrainingClips) -> TrainingClips:
    """A new set holding the same tensors (the upstream output stays as it was)."""
    return TrainingClips(
        clips.variant,
        clips.width,
        clips.height,
        list(clips.latents),
        list(clips.texts),
        list(clips.clip_frames),
        list(clips.fs),
        clips.empty_text,
        clips.clip_blank,
    )
