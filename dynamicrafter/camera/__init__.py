"""Camera control for the DynamiCrafter camera models (MotionCtrl, CameraCtrl, CamI2V; ZGCTroy/CamI2V)."""

from .path import CameraPath, CameraPathError, read_realestate10k, resample
from .presets import PRESETS, combine, preset
from .preview import preview

__all__ = ["PRESETS", "CameraPath", "CameraPathError", "combine", "preset", "preview", "read_realestate10k", "resample"]
