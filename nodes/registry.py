"""The node classes the pack registers: each feature module lists its own (``NODES``), as ComfyUI's extensions do."""

from __future__ import annotations

from comfy_api.latest import io

from .camera import NODES as CAMERA_NODES
from .conditioning import NODES as CONDITIONING_NODES
from .director import NODES as DIRECTOR_NODES
from .download.node import NODES as DOWNLOAD_NODES
from .freenoise import NODES as FREENOISE_NODES
from .init_noise import NODES as INIT_NOISE_NODES
from .loader import NODES as LOADER_NODES
from .long_video import NODES as LONG_VIDEO_NODES
from .pin_frames import NODES as PIN_FRAMES_NODES
from .sampler import NODES as SAMPLER_NODES
from .sketch import NODES as SKETCH_NODES
from .tooncrafter import NODES as TOONCRAFTER_NODES
from .training import NODES as TRAINING_NODES


def all_nodes() -> list[type[io.ComfyNode]]:
    """Every node class, in the order of the node menu."""
    return [
        *LOADER_NODES,
        *CONDITIONING_NODES,
        *SAMPLER_NODES,
        *DOWNLOAD_NODES,
        *DIRECTOR_NODES,
        *TOONCRAFTER_NODES,
        *LONG_VIDEO_NODES,
        *PIN_FRAMES_NODES,
        *INIT_NOISE_NODES,
        *SKETCH_NODES,
        *FREENOISE_NODES,
        *TRAINING_NODES,
        *CAMERA_NODES,
    ]
