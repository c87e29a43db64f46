"""Camera-control nodes: camera paths (presets, combination, RealEstate10K files), their preview, and the
camera in the conditioning of a DynamiCrafter camera model (MotionCtrl, CameraCtrl, CamI2V; ``nodes/camera_model.py``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import folder_paths
import node_helpers
from comfy_api.latest import io, ui

from ..dynamicrafter.camera import PRESETS, CameraPath, CameraPathError, combine, preset, preview, read_realestate10k
from ..dynamicrafter.camera.path import describe, relative_c2w, resample
from .adapter.family import COND_CAMERA, COND_FRAMES
from .adapter.inputs import CATEGORY, FRAMES_MAX
from .adapter.validation import CheckedNode
from .camera_guidance import DynamiCrafterCameraGuidance
from .camera_loader import DynamiCrafterLoadCameraModel

log = logging.getLogger(__name__)

CameraType = io.Custom("DYNAMICRAFTER_CAMERA")
MAX_FILE_BYTES = 4 * 1024 * 1024
FRAMES_TOOLTIP = "Frames of the path: the video's frames (16 for the released camera models)."
_PRESET_HELP = "; ".join(
    f"{name}: {help_text}, default {default:g}" for name, (_, default, help_text) in PRESETS.items()
)


def _camera_files() -> list[str]:
    """RealEstate10K camera files (.txt) in ComfyUI's input folder and its sub-folders."""
    root = folder_paths.get_input_directory()
    found = []
    for folder, _, names in os.walk(root):
        found += [
            os.path.relpath(os.path.join(folder, n), root).replace(os.sep, "/") for n in names if n.endswith(".txt")
        ]
    return sorted(found) or ["(no .txt camera file in the input folder)"]


class DynamiCrafterCameraPreset(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterCameraPreset",
            display_name="DynamiCrafter Camera Preset",
            category=f"{CATEGORY}/camera",
            description="A camera move for a DynamiCrafter camera model (MotionCtrl, CameraCtrl, CamI2V): the camera "
            "starts where the picture was taken and moves smoothly to the move's end. Two at once: 'DynamiCrafter "
            "Combine Cameras'. See the path with 'DynamiCrafter Camera Preview'.",
            inputs=[
                io.Combo.Input("preset", options=list(PRESETS), default="zoom in", tooltip=_PRESET_HELP),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=-4.0,
                    max=4.0,
                    step=0.05,
                    tooltip="Times the preset's default amount (negative reverses the move).",
                ),
                io.Int.Input("frames", default=16, min=2, max=FRAMES_MAX, tooltip=FRAMES_TOOLTIP),
            ],
            outputs=[CameraType.Output(display_name="camera")],
        )

    @classmethod
    def execute(cls, preset: str, strength: float, frames: int) -> io.NodeOutput:
        default = PRESETS[preset][1] if preset in PRESETS else 0.0
        path = _preset(preset, frames, strength * default)
        log.info("camera preset %s x%g: %s", preset, strength, describe(path))
        return io.NodeOutput(path)


def _preset(name: str, frames: int, amount: float) -> CameraPath:
    try:
        return preset(name, frames, amount)
    except CameraPathError as error:
        raise ValueError(str(error)) from None


class DynamiCrafterCombineCameras(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterCombineCameras",
            display_name="DynamiCrafter Combine Cameras",
            category=f"{CATEGORY}/camera",
            description="Both moves at once (e.g. orbit left while zooming in): at every frame the second move is "
            "made from where the first has brought the camera.",
            inputs=[
                CameraType.Input("first", tooltip="The first move."),
                CameraType.Input("second", tooltip="The move made on top of it (same frames)."),
            ],
            outputs=[CameraType.Output(display_name="camera")],
        )

    @classmethod
    def execute(cls, first: CameraPath, second: CameraPath) -> io.NodeOutput:
        try:
            return io.NodeOutput(combine(first, second))
        except CameraPathError as error:
            raise ValueError(str(error)) from None


class DynamiCrafterLoadCamera(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterLoadCamera",
            display_name="DynamiCrafter Load Camera File",
            category=f"{CATEGORY}/camera",
            description="A camera path from a RealEstate10K camera file (.txt in ComfyUI's input folder): a URL "
            "line, then per frame 'timestamp fx fy cx cy 0 0' and a row-major 3x4 world-to-camera pose. Resampled "
            "to the video's frames as the CamI2V reference does.",
            inputs=[
                io.Combo.Input(
                    "camera_file", options=_camera_files(), tooltip="A .txt camera file in the input folder."
                ),
                io.Int.Input("frames", default=16, min=2, max=FRAMES_MAX, tooltip=FRAMES_TOOLTIP),
                io.Float.Input(
                    "share",
                    default=1.0,
                    min=0.05,
                    max=1.0,
                    step=0.05,
                    tooltip="How much of the file's path the video plays (1 = all of it; the reference's "
                    "trace_extract_ratio).",
                ),
            ],
            outputs=[CameraType.Output(display_name="camera")],
        )

    QUEUE_TIME_LINKS = ("camera_file",)

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        """The file is read and checked when the prompt is queued (it is small): a wrong file fails at once."""
        name = values.get("camera_file")
        if name is None:
            return None
        try:
            _read_camera_file(str(name))
        except ValueError as error:
            return str(error)
        return None

    @classmethod
    def execute(cls, camera_file: str, frames: int, share: float) -> io.NodeOutput:
        try:
            camera = resample(_read_camera_file(camera_file), frames, share)
        except CameraPathError as error:
            raise ValueError(str(error)) from None
        log.info("camera file %s: %s", camera_file, describe(camera))
        return io.NodeOutput(camera)


def _read_camera_file(name: str) -> CameraPath:
    """A RealEstate10K camera file of the input folder, checked; every problem is a ValueError naming the file."""
    if name.startswith("(") or not name.endswith(".txt"):
        raise ValueError("no camera file chosen: put a RealEstate10K camera file (.txt) in ComfyUI's input folder")
    path = folder_paths.get_annotated_filepath(name)
    if not os.path.isfile(path):
        raise ValueError(f"camera file {name!r} not found in the input folder")
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise ValueError(f"{name}: larger than {MAX_FILE_BYTES // 2**20} MiB; not a camera file")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not a text file; a RealEstate10K camera file is text") from None
    try:
        return read_realestate10k(text, name)
    except CameraPathError as error:
        raise ValueError(str(error)) from None


class DynamiCrafterCameraPreview(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterCameraPreview",
            display_name="DynamiCrafter Camera Preview",
            category=f"{CATEGORY}/camera",
            description="A picture of the camera path, shown on the node: left, seen from above (right is right, forward is up); right, "
            "seen from the side (forward is right, up is up). Dots go from blue (first frame) to red (last); "
            "lines show where each camera looks; the cross marks the start.",
            inputs=[
                CameraType.Input("camera", tooltip="The camera path."),
                io.Int.Input(
                    "size", default=256, min=64, max=1024, step=32, tooltip="Height of the picture in pixels."
                ),
            ],
            outputs=[io.Image.Output(display_name="image")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, camera: CameraPath, size: int) -> io.NodeOutput:
        picture = preview(camera, size)
        return io.NodeOutput(picture, ui=ui.PreviewImage(picture, cls=cls))


class DynamiCrafterApplyCamera(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterApplyCamera",
            display_name="DynamiCrafter Apply Camera",
            category=f"{CATEGORY}/camera",
            description="Puts a camera path into the conditioning of a DynamiCrafter camera model (MotionCtrl, "
            "CameraCtrl, CamI2V or RealCam-I2V, from MuteApo/CamI2V; 'DynamiCrafter Load Camera Model'), for the "
            "positive and the negative side alike, as the reference samples. Works with the stock KSampler, "
            "SamplerCustomAdvanced and the DynamiCrafter Sampler.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="From the DynamiCrafter conditioning node."),
                io.Conditioning.Input("negative", tooltip="From the DynamiCrafter conditioning node."),
                CameraType.Input("camera", tooltip="The camera path (as many frames as the video)."),
                io.Float.Input(
                    "trace_scale",
                    default=1.0,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                    tooltip="Scales the camera's travel (the reference's trace_scale_factor); turns are unchanged. "
                    "For RealCam-I2V, multiply in the scene's metric depth scale here (its depth step is not run).",
                ),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, camera: CameraPath, trace_scale: float) -> io.NodeOutput:
        frames = _frames(positive)
        if camera.frames != frames:
            raise ValueError(
                f"the camera path has {camera.frames} frames but the video has {frames}: set the camera node's "
                "frames to the conditioning node's"
            )
        poses = relative_c2w(camera.w2c[None], 0, trace_scale)
        values = {COND_CAMERA: poses}
        return io.NodeOutput(
            node_helpers.conditioning_set_values(positive, values),
            node_helpers.conditioning_set_values(negative, values),
        )


def _frames(conditioning) -> int:
    for entry in conditioning or []:
        if len(entry) > 1 and isinstance(entry[1], dict) and entry[1].get(COND_FRAMES) is not None:
            return int(entry[1][COND_FRAMES])
    raise ValueError(
        "the conditioning has no DynamiCrafter video: connect the outputs of a 'DynamiCrafter Image To Video' node"
    )


NODES = [
    DynamiCrafterLoadCameraModel,
    DynamiCrafterCameraPreset,
    DynamiCrafterCombineCameras,
    DynamiCrafterLoadCamera,
    DynamiCrafterCameraPreview,
    DynamiCrafterApplyCamera,
    DynamiCrafterCameraGuidance,
]
