"""Wall time per layer class, from forward hooks (CPU only: no device sync is needed).

Times are inclusive: a ``TemporalConvBlock`` sits inside its ``ResBlock``, so both lines count it.
Our layer classes and the original's share names (ResBlock, TemporalConvBlock, SpatialTransformer,
TemporalTransformer, Downsample, Upsample), so the two breakdowns line up. The hooks cost a few
microseconds per layer, negligible against the layers themselves.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from torch import nn

LAYER_CLASSES = ("ResBlock", "TemporalConvBlock", "SpatialTransformer", "TemporalTransformer", "Downsample", "Upsample")


class LayerClassTimer:
    """Attach to a model; call :meth:`end_call` after each forward; read :meth:`medians`."""

    def __init__(self, model: nn.Module, classes: tuple[str, ...] = LAYER_CLASSES):
        self.classes = classes
        self.calls: list[dict[str, float]] = []
        self._current: dict[str, float] = defaultdict(float)
        self._starts: dict[int, float] = {}
        self._handles = []
        for module in model.modules():
            if type(module).__name__ in classes:
                self._handles.append(module.register_forward_pre_hook(self._before))
                self._handles.append(module.register_forward_hook(self._after))

    def _before(self, module: nn.Module, *_: object) -> None:
        self._starts[id(module)] = time.perf_counter()

    def _after(self, module: nn.Module, *_: object) -> None:
        self._current[type(module).__name__] += time.perf_counter() - self._starts.pop(id(module))

    def end_call(self) -> None:
        self.calls.append({name: self._current.get(name, 0.0) for name in self.classes})
        self._current = defaultdict(float)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def medians(self) -> dict[str, float]:
        """Median seconds per class over the recorded calls."""
        return {name: statistics.median(call[name] for call in self.calls) for name in self.classes}
