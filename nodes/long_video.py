"""Long videos in one queue run: a keyframe chain (A -> B -> C ...) and an image-to-video continuation.

Both nodes sample their 16-frame clips themselves (``clip_sampler``) with the pack's own pieces: ``build_conditioning``
(the conditioning nodes' code), the DynamiCrafter Sampler's model patch, schedule and DDIM sampler
(``sample_custom``), and the VAE's decode. Clips are joined by :mod:`..dynamicrafter.chain`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from comfy_api.latest import io

from ..dynamicrafter.chain import (
    ContinuationPlan,
    chain_length,
    check_chain,
    join_segments,
    join_with_overlap,
    keyframe_segments,
    match_color_stats,
)
from ..dynamicrafter.frames import Task
from ..dynamicrafter.image import fit_image
from .adapter.family import COND_IMAGE_TOKENS, require_interpolation
from .adapter.validation import CheckedNode, chain_problem, refuse
from .chain_sketches import ChainSketchChecks, SketchSettings, chain_sketch_inputs, plan_chain_sketches
from .conditioning import (
    CONDITIONING_IO,
    FIT_INPUT,
    FS_TOOLTIP,
    INTERP_FS_TOOLTIP,
    augmentation_input,
    build_conditioning,
    end_token_inputs,
    frames_input,
    fs_input,
    size_inputs,
)
from .freenoise import MODE_FREENOISE, FreeNoiseChecks, freenoise_long_video
from .sampler import model_variant
from .segment_sampler import LONG_CATEGORY, SamplingSettings, SegmentSampler, segment_sampling_inputs

log = logging.getLogger(__name__)


def stack_keyframes(keyframes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Keyframes as one IMAGE batch ``[K, H, W, C]``; a list of IMAGE batches must agree in size."""
    batches = [keyframes] if isinstance(keyframes, torch.Tensor) else list(keyframes)
    if not batches:
        raise ValueError("no keyframes given: connect an IMAGE batch of 2 or more pictures")
    size = tuple(batches[0].shape[1:3])
    for i, batch in enumerate(batches):
        if batch.ndim != 4 or batch.shape[-1] < 3:
            raise ValueError(f"keyframes must be IMAGE batches [K, H, W, 3], got shape {tuple(batch.shape)}")
        if tuple(batch.shape[1:3]) != size:
            raise ValueError(
                f"keyframes differ in size: batch {i} is {batch.shape[2]}x{batch.shape[1]}, the first "
                f"is {size[1]}x{size[0]}; resize them to one size first (e.g. 'Upscale Image')"
            )
    return torch.cat([b[..., :3] for b in batches], dim=0)


def segment_positives(positive, clip, segment_prompts: str, segments: int) -> list:
    """Positive conditioning per segment: one line of ``segment_prompts`` each, an empty line = ``positive``."""
    if not segment_prompts.strip():
        return [positive] * segments
    lines = segment_prompts.splitlines()
    if len(lines) != segments:
        raise ValueError(
            f"segment_prompts has {len(lines)} lines but there are {segments} segments (keyframes - 1): "
            "write one line per segment; an empty line uses the positive input"
        )
    if clip is None and any(line.strip() for line in lines):
        raise ValueError("segment_prompts needs the 'clip' input (the DynamiCrafter CLIP) to encode its lines")
    return [
        clip.encode_from_tokens_scheduled(clip.tokenize(line.strip())) if line.strip() else positive for line in lines
    ]


class DynamiCrafterKeyframeChain(ChainSketchChecks, CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterKeyframeChain",
            display_name="DynamiCrafter Keyframe Chain",
            category=LONG_CATEGORY,
            description="One video through several keyframes (A -> B -> C ...) with the 512_interp model, in one run: "
            "each pair of neighbouring keyframes is interpolated as its own clip (seed + 2*i), and the "
            "clips are joined with every keyframe shown once, so K keyframes and 16-frame segments "
            "give 15*(K-1)+1 frames without a repeated frame at the joins. Optional ToonCrafter sketches "
            "steer chosen frames of the whole video (numbered over its output frames).",
            hidden=[io.Hidden.unique_id],  # the queue-time check finds the keyframe count by it (chain_queue)
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter 512_interp model."),
                *CONDITIONING_IO,
                io.Image.Input(
                    "keyframes",
                    tooltip="The keyframes in order, as one IMAGE batch of 2 or more pictures "
                    "of one size ('Batch Images').",
                ),
                *size_inputs(),
                frames_input(tooltip="Frames per segment, both keyframes included; the model was trained on 16."),
                fs_input(INTERP_FS_TOOLTIP),
                *segment_sampling_inputs(),
                FIT_INPUT,
                io.Clip.Input("clip", optional=True, tooltip="The DynamiCrafter CLIP, to encode segment_prompts."),
                io.String.Input(
                    "segment_prompts",
                    default="",
                    multiline=True,
                    optional=True,
                    tooltip="Optional: one prompt per line, line i for the segment from keyframe i to "
                    "i+1; an empty line (or no text) uses the positive input. Needs 'clip'.",
                ),
                augmentation_input(
                    "Noise added to every keyframe before it is encoded (0 = none, the original). A "
                    "little (0.02-0.1) loosens each segment's hold on its keyframes: more motion, "
                    "less exact likeness."
                ),
                *end_token_inputs(
                    "How much of each segment's END keyframe's CLIP image tokens its frames see "
                    "(0 = the start keyframe's only, the original). Helps when neighbouring "
                    "keyframes differ a lot."
                ),
                *chain_sketch_inputs(),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="All frames of the chained video.")],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        vae,
        clip_vision,
        keyframes,
        width,
        height,
        frames,
        fs,
        seed,
        steps,
        cfg,
        eta,
        guidance_rescale,
        fit,
        clip=None,
        segment_prompts: str = "",
        noise_augmentation: float = 0.0,
        end_image_tokens: float = 0.0,
        end_token_schedule: str = "constant",
        sketch_encoder=None,
        sketches=None,
        sketch_frames: str = "",
        sketch_strength: float = 0.6,
        sketch_start_percent: float = 0.0,
        sketch_end_percent: float = 1.0,
        sketch_invert: bool = True,
    ) -> io.NodeOutput:
        keyframes = stack_keyframes(keyframes)
        check_chain(keyframes.shape[0], frames)
        refuse(chain_problem(keyframes.shape[0], width, height, frames))
        require_interpolation(model_variant(model), "The keyframe chain")
        segments = keyframe_segments(keyframes.shape[0])
        positives = segment_positives(positive, clip, segment_prompts or "", len(segments))
        settings = SketchSettings(sketch_strength, sketch_start_percent, sketch_end_percent, sketch_invert)
        guide = plan_chain_sketches(sketch_encoder, sketches, sketch_frames, keyframes.shape[0], frames, settings)
        sampler = SegmentSampler(model, vae, SamplingSettings(seed, steps, cfg, eta, guidance_rescale), len(segments))
        clips = []
        for index, (start, end) in enumerate(segments):
            pos, neg, latent = build_conditioning(
                positives[index],
                negative,
                vae,
                clip_vision,
                keyframes[start : start + 1],
                width,
                height,
                frames,
                fs,
                1,
                fit,
                "interp",
                keyframes[end : end + 1],
                augmentation=noise_augmentation,
                end_share=end_image_tokens,
                end_schedule=end_token_schedule,
            )
            if guide is not None:
                pos, neg = guide.guide(index, pos, neg)
            clips.append(sampler.decode(sampler.sample(index, pos, neg, latent)))
        video = join_segments(clips)
        log.info(
            "DynamiCrafter keyframe chain: %d keyframes -> %d frames",
            keyframes.shape[0],
            chain_length(keyframes.shape[0], frames),
        )
        return io.NodeOutput(video)


MODE_CONTINUE = "continue"
MODE_RETURN = "return to source (512_interp)"


@dataclass
class LongVideoResult:
    """The joined video, every clip as generated, and the picture each clip was conditioned on."""

    video: torch.Tensor
    clips: list[torch.Tensor]
    starts: list[torch.Tensor]


def generate_long_video(
    model,
    positive,
    negative,
    vae,
    clip_vision,
    image: torch.Tensor,
    plan: ContinuationPlan,
    width: int,
    height: int,
    fs: int,
    fit: str,
    settings: SamplingSettings,
    mode: str,
    anchor_tokens: bool,
    match_colors: bool,
) -> LongVideoResult:
    """Clip 0 animates ``image``; clip k+1 continues from frame ``plan.condition_index`` of clip k.

    ``anchor_tokens``: every clip's image tokens come from the source picture (only the concat latent moves
    on). ``match_colors``: a continuation's start frame gets the source's per-channel colour statistics.
    ``MODE_RETURN`` (512_interp): clip 0 is a loop of the source, each continuation interpolates from its
    start frame back to the source picture.
    """
    returning = mode == MODE_RETURN
    if returning:
        require_interpolation(model_variant(model), f"mode '{MODE_RETURN}'")
    elif model_variant(model).interpolation:
        log.warning(
            "DynamiCrafter long video: the 512_interp model was trained on first/last-frame clips; "
            "mode '%s' suits it better",
            MODE_RETURN,
        )
    source = fit_image(image[:1, :, :, :3], width, height, fit)
    sampler = SegmentSampler(model, vae, settings, plan.clips)
    clips: list[torch.Tensor] = []
    starts: list[torch.Tensor] = []
    source_tokens = None
    for index in range(plan.clips):
        if index == 0:
            start = source
        else:
            start = clips[-1][plan.condition_index : plan.condition_index + 1]
            if match_colors:
                start = match_color_stats(start, source)
        task: Task = ("loop" if index == 0 else "interp") if returning else "i2v"
        last = source if task == "interp" else None
        pos, neg, latent = build_conditioning(
            positive,
            negative,
            vae,
            clip_vision,
            start,
            width,
            height,
            plan.clip_frames,
            fs,
            1,
            fit,
            task,
            last,
            tokens=source_tokens if anchor_tokens else None,
        )
        if index == 0:
            source_tokens = pos[0][1][COND_IMAGE_TOKENS]
        starts.append(start)
        clips.append(sampler.decode(sampler.sample(index, pos, neg, latent)))
    return LongVideoResult(join_with_overlap(clips, plan.overlap, plan.total), clips, starts)


class DynamiCrafterLongVideo(FreeNoiseChecks, CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterLongVideo",
            display_name="DynamiCrafter Long Video",
            category=LONG_CATEGORY,
            description="Image to video longer than one clip, in one run. Each new clip continues from the previous "
            "clip: it starts at the frame where an overlap of 'overlap' frames begins, and the overlapping "
            "frames are crossfaded linearly in pixel space, so there is no cut and no repeated frame. "
            "Against drift, every clip's image tokens come from the ORIGINAL picture (anchor_tokens) "
            "while only its image latent follows the video; match_colors pulls each new start frame "
            "back to the picture's colours; with the 512_interp model, 'return to source' makes every "
            "clip end on the original picture; 'FreeNoise one pass' samples all frames at once (no joins). "
            "Exactly total_frames frames come out.",
            inputs=[
                io.Model.Input("model", tooltip="The DynamiCrafter model (256, 512, 1024, or 512_interp)."),
                *CONDITIONING_IO,
                io.Image.Input("image", tooltip="The picture to animate (any size; fitted to width x height)."),
                io.Int.Input(
                    "total_frames",
                    default=40,
                    min=1,
                    max=4096,
                    tooltip="Frames of the finished video (cut from the last clip).",
                ),
                io.Int.Input(
                    "overlap",
                    default=4,
                    min=1,
                    max=32,
                    tooltip="Frames each new clip shares with the one before, crossfaded; at most half a "
                    "clip. More = smoother joins, fewer new frames per clip.",
                ),
                io.Combo.Input(
                    "mode",
                    options=[MODE_CONTINUE, MODE_RETURN, MODE_FREENOISE],
                    default=MODE_CONTINUE,
                    tooltip="continue: each clip animates on from the previous one (any model). return to "
                    "source: 512_interp only, every clip ends on the original picture (no drift; "
                    "the motion keeps coming back). FreeNoise one pass: one coherent video, no joins.",
                ),
                io.Boolean.Input(
                    "anchor_tokens",
                    default=True,
                    tooltip="Take every clip's image tokens from the original picture, not from the "
                    "frame it starts at: keeps subject and style from drifting.",
                ),
                io.Boolean.Input(
                    "match_colors",
                    default=False,
                    tooltip="Give each continuation's start frame the original picture's colour mean "
                    "and contrast, against slow colour drift.",
                ),
                *size_inputs(),
                frames_input("clip_frames", "Frames per generated clip; the models were trained on 16."),
                fs_input(FS_TOOLTIP),
                *segment_sampling_inputs(),
                FIT_INPUT,
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The frames of the long video.")],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        vae,
        clip_vision,
        image,
        total_frames,
        overlap,
        mode,
        anchor_tokens,
        match_colors,
        width,
        height,
        clip_frames,
        fs,
        seed,
        steps,
        cfg,
        eta,
        guidance_rescale,
        fit,
    ) -> io.NodeOutput:
        plan = ContinuationPlan(total_frames, clip_frames, overlap)
        generate = freenoise_long_video if mode == MODE_FREENOISE else generate_long_video
        result = generate(
            model,
            positive,
            negative,
            vae,
            clip_vision,
            image,
            plan,
            width,
            height,
            fs,
            fit,
            SamplingSettings(seed, steps, cfg, eta, guidance_rescale),
            mode,
            anchor_tokens,
            match_colors,
        )
        return io.NodeOutput(result.video)


NODES = [DynamiCrafterKeyframeChain, DynamiCrafterLongVideo]
