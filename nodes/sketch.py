"""ToonCrafter sketch guidance: ToonCrafter's sketch encoder (an SD 2.1-layout ControlNet reading 1-channel line
pictures) through the host's ControlNet machinery.

The stock 'Load ControlNet Model' loads the file (``sketch_encoder.ckpt`` or Kijai's fp16 safetensors; the host
derives the network from its tensors). What the stock 'Apply ControlNet' cannot do, :class:`SketchControlNet`
adds, as the sketch-guidance code (mattyamonaca/ToonCrafter_with_SketchGuidance, ``ddpm3d.apply_model``) does:

* the network reads ``[text ; image tokens of every frame]`` as its context, not the text alone;
* its hint is one channel: the sketch's grey value, inverted (lines bright on black), in [0, 1];
* only the frames that have a sketch get its residuals (the 2-D network runs on those frames only): the others
  are left free, no control at all. The reference needs a sketch for every frame; a blank sketch there still
  steers ("no lines here").

Residuals are scaled by the strength and added to the UNet's skips and middle block (``patches.apply_control``),
inside the host's start/end percent range, on the positive and the negative side alike (the reference's
unconditional branch carries the same ``control_cond``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import comfy.cldm.cldm
import comfy.controlnet
import torch
from comfy_api.latest import io

from ..dynamicrafter.config import SKETCH_ENCODER_FILE, SKETCH_ENCODER_FP16_FILE, TOONCRAFTER
from ..dynamicrafter.frames import parse_frame_list
from ..dynamicrafter.image import fit_image
from .adapter.family import COND_CONCAT, COND_FRAMES, NEEDS_CONDITIONING, DynamiCrafterNet
from .adapter.inputs import CATEGORY
from .adapter.validation import CheckedNode

SKETCH_HINT_CHANNELS = 1
SKETCH_CONTEXT_WIDTH = 1024
LUMA = (0.299, 0.587, 0.114)
"""Grey value of an RGB picture (ITU-R BT.601, OpenCV's ``COLOR_BGR2GRAY``, which the reference uses)."""
PERCENTS = ("start_percent", "end_percent")
EXPECTED_FILE = (
    f"ToonCrafter's sketch encoder ({SKETCH_ENCODER_FILE} from huggingface.co/{TOONCRAFTER.hf_repo}, or Kijai's "
    f"{SKETCH_ENCODER_FP16_FILE}) in models/controlnet, loaded with 'Load ControlNet Model'"
)


def sketch_encoder_problem(control_net: Any) -> str | None:
    """Why ``control_net`` is not ToonCrafter's sketch encoder as the host loaded it, or None."""
    model = getattr(control_net, "control_model", None)
    if not isinstance(control_net, comfy.controlnet.ControlNet) or not isinstance(model, comfy.cldm.cldm.ControlNet):
        return f"this is not an SD-layout ControlNet ({type(control_net).__name__}); expected {EXPECTED_FILE}"
    channels = model.input_hint_block[0].in_channels
    if channels != SKETCH_HINT_CHANNELS:
        return (
            f"this ControlNet reads {channels}-channel hint pictures, ToonCrafter's sketch encoder reads "
            f"{SKETCH_HINT_CHANNELS}: use the stock 'Apply ControlNet' for it, or load {EXPECTED_FILE}"
        )
    widths = {m.in_features for name, m in model.named_modules() if name.endswith("attn2.to_k")}
    if widths != {SKETCH_CONTEXT_WIDTH}:
        return (
            f"this ControlNet reads {'/'.join(map(str, sorted(widths))) or 'no'}-wide text context, ToonCrafter's "
            f"sketch encoder reads {SKETCH_CONTEXT_WIDTH} (SD 2.x's): load {EXPECTED_FILE}"
        )
    return None


def sketch_hint(sketches: torch.Tensor, width: int, height: int, invert: bool) -> torch.Tensor:
    """IMAGE ``[S, H, W, 3]`` -> hint ``[S, 1, height, width]`` in [0, 1]: fitted as the conditioning image is
    (cover and centre crop), grey, inverted when the lines are dark on white."""
    fitted = fit_image(sketches, width, height, "crop")
    grey = (fitted[..., :3] * torch.tensor(LUMA, dtype=fitted.dtype)).sum(-1, keepdim=True)
    grey = 1.0 - grey if invert else grey
    return grey.movedim(-1, 1).clamp(0.0, 1.0).contiguous()


def sketched_mask(frames: int, sketched: list[int]) -> torch.Tensor:
    """``[frames]`` booleans: True on the frames with a sketch."""
    mask = torch.zeros(frames, dtype=torch.bool)
    mask[sketched] = True
    return mask


def scattered(residual: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Residuals computed for ``rows`` only, as a full batch with zeros elsewhere."""
    full = residual.new_zeros((rows.shape[0], *residual.shape[1:]))
    full[rows] = residual
    return full


def add_controls(own: dict | None, previous: dict | None) -> dict | None:
    """Residual lists summed place by place (a chained ControlNet's and this one's), None meaning nothing."""
    if own is None or previous is None:
        return own if previous is None else previous
    out = {}
    for key in ("input", "middle", "output"):
        mine, theirs = list(own.get(key, [])), list(previous.get(key, []))
        length = max(len(mine), len(theirs))
        mine, theirs = mine + [None] * (length - len(mine)), theirs + [None] * (length - len(theirs))
        out[key] = [a if b is None else b if a is None else a + b for a, b in zip(mine, theirs, strict=True)]
    return out


class SketchControlNet(comfy.controlnet.ControlNet):
    """The host's ControlNet with the sketch encoder's context and per-frame residuals (module docstring)."""

    sketched: torch.Tensor | None = None
    """``[T]`` booleans, the frames with a sketch; the hint holds their sketches only, in frame order."""
    network: DynamiCrafterNet | None = None

    @classmethod
    def from_host(cls, control_net: comfy.controlnet.ControlNet, sketched: torch.Tensor) -> SketchControlNet:
        """A sketch control sharing the host ControlNet's loaded weights (no copy of the network)."""
        out = cls(None, load_device=control_net.load_device, manual_cast_dtype=control_net.manual_cast_dtype)
        out.control_model, out.control_model_wrapped = control_net.control_model, control_net.control_model_wrapped
        control_net.copy_to(out)
        out.sketched = sketched
        return out

    def copy(self) -> SketchControlNet:
        return SketchControlNet.from_host(self, self.sketched)

    def pre_run(self, model, percent_to_timestep_function) -> None:
        if not isinstance(model.diffusion_model, DynamiCrafterNet):
            raise ValueError("the ToonCrafter sketch guidance works with DynamiCrafter / ToonCrafter models only")
        super().pre_run(model, percent_to_timestep_function)
        self.network = model.diffusion_model

    def cleanup(self) -> None:
        self.network = None
        super().cleanup()

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        previous = self.previous_controlnet
        control_prev = None
        if previous is not None:
            control_prev = previous.get_control(x_noisy, t, cond, batched_number, transformer_options)
        frames = cond.get(COND_FRAMES)
        if frames is None:
            raise ValueError(NEEDS_CONDITIONING)
        if frames != self.sketched.shape[0]:
            raise ValueError(
                f"the sketches were laid out for a {self.sketched.shape[0]}-frame video but the conditioning "
                f"makes {frames} frames: connect the sketch guidance node after the conditioning node it guides"
            )
        # the network is 2-D, one frame at a time: it runs on the sketched frames only
        rows = self.sketched.to(x_noisy.device).repeat(x_noisy.shape[0] // frames)
        context = self.network.control_context(cond, transformer_options)
        every = bool(rows.all())
        if not every:
            batch = rows.shape[0]
            cond = {
                k: v[rows] if isinstance(v, torch.Tensor) and v.shape[:1] == (batch,) else v for k, v in cond.items()
            }
            x_noisy, context = x_noisy[rows], context[rows]
            t = t[rows] if t.shape[:1] == (batch,) else t
        self.previous_controlnet = None  # the chained one ran above, on all frames
        try:
            own = super().get_control(
                x_noisy, t, {**cond, "crossattn_controlnet": context}, batched_number, transformer_options
            )
        finally:
            self.previous_controlnet = previous
        if own is not None and not every:
            own = {k: [None if r is None else scattered(r, rows) for r in v] for k, v in own.items()}
        return add_controls(own, control_prev)


def video_layout(positive) -> tuple[int, int, int]:
    """(frames, width, height) of the video the DynamiCrafter conditioning ``positive`` makes."""
    for _, values in positive or []:
        frames, latent = values.get(COND_FRAMES), values.get(COND_CONCAT)
        if frames is not None and latent is not None:
            return int(frames), latent.shape[-1] * 8, latent.shape[-2] * 8
    raise ValueError(
        "the sketch guidance needs the DynamiCrafter conditioning: connect the positive and negative outputs of "
        "a 'DynamiCrafter Image To Video' (or interpolation / ToonCrafter) node"
    )


def listed_frames(text: str, frames: int, name: str = "frames") -> list[int]:
    """The frames ``text`` lists (ranges, -1 = last), each once and in increasing order, or a clear error. Stops
    at the first part out of order, so a long text cannot expand to more than ``frames`` numbers."""
    listed: list[int] = []
    for part in (p for p in text.split(",") if p.strip()):
        chosen = parse_frame_list(part, frames)
        if listed and chosen[0] <= listed[-1]:
            raise ValueError(
                f"'{name}' ({text.strip()}) must name each frame once, in increasing order, with the sketches "
                "batched in that order"
            )
        listed.extend(chosen)
    return listed


def sketched_frames(text: str, frames: int, sketches: int, name: str = "frames") -> list[int]:
    """The frames the sketches are for (the sketch batch in the same order); checks that the counts agree.
    ``name``: the input holding ``text``, for the messages."""
    if not text.strip():
        if sketches != frames:
            raise ValueError(
                f"{sketches} sketches for a {frames}-frame video: give one sketch per frame, or list the frames "
                f"the sketches are for in '{name}' (e.g. '0, 7, 15')"
            )
        return list(range(frames))
    listed = listed_frames(text, frames, name)
    if len(listed) != sketches:
        raise ValueError(
            f"'{name}' lists {len(listed)} frames ({', '.join(map(str, listed))}) but {sketches} sketches came: "
            "give one sketch per listed frame, in that order"
        )
    return listed


def percent_problem(start: float | None, end: float | None, names: tuple[str, str]) -> str | None:
    """Why a start/end percent pair (inputs ``names``) cannot run, or None (unknown values pass)."""
    if start is not None and end is not None and start > end:
        return f"{names[0]} ({start}) is after {names[1]} ({end}); set start at or before end"
    return None


def apply_sketches(positive, negative, control: SketchControlNet, hint, strength, start, end) -> tuple:
    """Attach ``control`` to every entry of both conditionings, chained after any ControlNet already there."""
    made: dict[Any, SketchControlNet] = {}
    out = []
    for conditioning in (positive, negative):
        entries = []
        for tokens, values in conditioning:
            values = values.copy()
            previous = values.get("control")
            if previous not in made:
                made[previous] = control.copy().set_cond_hint(hint, strength, (start, end))
                made[previous].set_previous_controlnet(previous)
            values["control"], values["control_apply_to_uncond"] = made[previous], False
            entries.append([tokens, values])
        out.append(entries)
    return tuple(out)


def guide_frames(positive, negative, control_net, sketches, chosen: list[int], strength, start, end, invert) -> tuple:
    """Both conditionings with ``sketches`` guiding the frames ``chosen`` (in that order) of the video they make;
    ``control_net`` is the host-loaded sketch encoder (checked with :func:`sketch_encoder_problem`)."""
    length, width, height = video_layout(positive)
    hint = sketch_hint(sketches, width, height, invert)
    control = SketchControlNet.from_host(control_net, sketched_mask(length, chosen))
    return apply_sketches(positive, negative, control, hint, strength, start, end)


class DynamiCrafterSketchGuidance(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterSketchGuidance",
            display_name="ToonCrafter Sketch Guidance",
            category=f"{CATEGORY}/tooncrafter",
            description="Guides chosen frames of a ToonCrafter (or DynamiCrafter) video with line sketches, through "
            "ToonCrafter's sketch encoder. Frames without a sketch are left free. Works with the DynamiCrafter "
            "Sampler and the stock samplers.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="From the DynamiCrafter / ToonCrafter conditioning node."),
                io.Conditioning.Input("negative", tooltip="From the same conditioning node."),
                io.ControlNet.Input(
                    "control_net",
                    tooltip=f"ToonCrafter's sketch encoder ({SKETCH_ENCODER_FILE} or {SKETCH_ENCODER_FP16_FILE} "
                    "in models/controlnet) from the stock 'Load ControlNet Model'.",
                ),
                io.Image.Input(
                    "sketches", tooltip="Line drawings, one per listed frame (any size: fitted like the keyframes)."
                ),
                io.String.Input(
                    "frames",
                    default="",
                    tooltip="Frames the sketches are for, in increasing order (the sketch batch in the same "
                    "order), e.g. '0, 7, 15' or '4-6' (0 = first, -1 = last). Empty: one sketch per frame. The "
                    "other frames get no guidance.",
                ),
                io.Float.Input(
                    "strength",
                    default=0.6,
                    min=0.0,
                    max=2.0,
                    step=0.01,
                    tooltip="How strongly the sketches steer (the reference's control_scale; 0.6 there).",
                ),
                io.Float.Input(
                    "start_percent", default=0.0, min=0.0, max=1.0, step=0.001, tooltip="Guide from this point."
                ),
                io.Float.Input(
                    "end_percent", default=1.0, min=0.0, max=1.0, step=0.001, tooltip="Stop guiding at this point."
                ),
                io.Boolean.Input(
                    "invert",
                    default=True,
                    tooltip="On: dark lines on a light background (as drawn). Off: the sketches are already light "
                    "lines on black (as Kijai's wrapper takes them).",
                ),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        problem = percent_problem(values.get("start_percent"), values.get("end_percent"), PERCENTS)
        text = values.get("frames")
        if problem is None and text:
            try:
                listed_frames(text, 1024)
            except ValueError as error:
                problem = f"frames: {error}"
        return problem

    @classmethod
    def execute(
        cls, positive, negative, control_net, sketches, frames, strength, start_percent, end_percent, invert
    ) -> io.NodeOutput:
        problem = sketch_encoder_problem(control_net)
        if problem is not None:
            raise ValueError(problem)
        if strength == 0:
            return io.NodeOutput(positive, negative)
        chosen = sketched_frames(frames, video_layout(positive)[0], sketches.shape[0])
        return io.NodeOutput(
            *guide_frames(
                positive, negative, control_net, sketches, chosen, strength, start_percent, end_percent, invert
            )
        )


NODES = [DynamiCrafterSketchGuidance]
