"""ComfyUI entry point of the DynamiCrafter (native) node pack: registers the V3 nodes."""

from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
