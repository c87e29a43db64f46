"""The shipped workflows, each described once: the DynamiCrafter and ToonCrafter ones (``core``), the CIL model
(``cil``), the controls (``controls``), FreeNoise (``freenoise``), sketch guidance (``sketch``) and the stock
LoRA and ControlNet nodes (``stock``); ``workflows()`` lists them all."""

from .core import workflows

__all__ = ["workflows"]
