"""Load Camera Model: a MotionCtrl / CameraCtrl / CamI2V / RealCam-I2V file (MuteApo/CamI2V), whole or laid over
the base DynamiCrafter checkpoint it was trained from."""

from __future__ import annotations

import functools

import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..dynamicrafter.camera.files import camera_checkpoint
from ..dynamicrafter.checkpoint import CheckpointError
from .adapter.inputs import CATEGORY
from .adapter.patcher import WEIGHT_DTYPES, model_from_checkpoint
from .adapter.validation import CheckedNode
from .camera_model import METHOD_NAMES

FOLDERS = ("checkpoints", "diffusion_models")
NO_BASE = "(none: the camera file is complete)"


def _files() -> list[str]:
    names: list[str] = []
    for folder in FOLDERS:
        names.extend(n for n in folder_paths.get_filename_list(folder) if n not in names)
    return sorted(names)


def _path(name: str) -> str:
    for folder in FOLDERS:
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    raise ValueError(f"{name} was not found in the {' or '.join(FOLDERS)} model folders")


class DynamiCrafterLoadCameraModel(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterLoadCameraModel",
            display_name="DynamiCrafter Load Camera Model",
            category=f"{CATEGORY}/camera",
            description="A DynamiCrafter camera model from MuteApo/CamI2V (256_motionctrl.pt, 256_cameractrl.pt, "
            "256_cami2v.pt, 512_cami2v_50k.pt, RealCam-I2V). The method is read from the file. A file that holds "
            "only the trained layers is laid over the base DynamiCrafter checkpoint of its size (model.ckpt of "
            "Doubiiu/DynamiCrafter or DynamiCrafter_512). Take CLIP, VAE and CLIP vision from the base file's loader.",
            inputs=[
                io.Combo.Input("camera_checkpoint", options=_files(), tooltip="The camera file."),
                io.Combo.Input(
                    "base_checkpoint",
                    options=[NO_BASE, *_files()],
                    default=NO_BASE,
                    tooltip="The base DynamiCrafter checkpoint of the same size, when the camera file holds only "
                    "the trained layers (the loader says which is missing).",
                ),
                io.Combo.Input(
                    "weight_dtype", options=list(WEIGHT_DTYPES), default="default", tooltip="Weight storage."
                ),
            ],
            outputs=[
                io.Model.Output(tooltip="The camera model: connect a camera through 'DynamiCrafter Apply Camera'.")
            ],
        )

    @classmethod
    def execute(cls, camera_checkpoint: str, base_checkpoint: str, weight_dtype: str) -> io.NodeOutput:
        reader = functools.partial(comfy.utils.load_torch_file, safe_load=True)
        base = None if base_checkpoint == NO_BASE else _path(base_checkpoint)
        ckpt = camera_checkpoint_of(_path(camera_checkpoint), base, reader)
        try:
            model = model_from_checkpoint(ckpt, weight_dtype)
        except CheckpointError as error:
            if base is None:
                raise CheckpointError(
                    ckpt.path, f"{error}; if it holds only the trained layers, choose its base checkpoint"
                ) from None
            raise
        return io.NodeOutput(model)


def camera_checkpoint_of(path: str, base: str | None, reader):
    ckpt = camera_checkpoint(path, base, reader=reader, mmap=not comfy.utils.DISABLE_MMAP)
    method = METHOD_NAMES.get(ckpt.unet_config.camera)
    if method is None:
        raise CheckpointError(path, "no camera method could be read from its layers")
    return ckpt


NODES = [DynamiCrafterLoadCameraModel]
