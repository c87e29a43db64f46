"""How a workflow is described: nodes with their widget values and links, and the ids all workflows share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .layout import CONTROL, UPLOAD, node_type

Link = tuple[int, int]
"""(source node id, source output slot)."""

# Node ids, shared by every workflow (batch scripts can patch e.g. node 6's seed in any of them).
LOADER, POSITIVE, NEGATIVE, IMAGE, CONDITIONING, SAMPLER, DECODE, VIDEO, SAVE, END_IMAGE, TRIM, NOTE = range(1, 13)
# Nodes of the longer workflows (the keyframe chain and the long video take the sampler's id, 6, for their seed).
MIDDLE_IMAGE, BATCH_FIRST, BATCH_ALL, DIRECTOR, DESCRIBE, STORYBOARD, SOUNDTRACK = range(13, 20)
# Stock nodes that change the model or the conditioning: ControlNet (loader, hint picture, apply) and LoRA.
CONTROLNET, HINT, APPLY_CONTROLNET, LORA = range(20, 24)
# Nodes of the sampler-control workflows: a video's frames, or a picture, as the sampler's start latent; pinning.
SOURCE_VIDEO, VIDEO_PARTS, CLIP_FRAMES, FIT, ENCODE, REPEAT, PIN = range(30, 37)
# SamplerCustomAdvanced's pieces (the custom sampler itself takes the sampler's id, 6).
NOISE, GUIDER, DDIM, SCHEDULER = range(37, 41)
# ToonCrafter sketch guidance: the sketch encoder (stock ControlNet loader), the sketch picture, the apply node.
SKETCH_ENCODER, SKETCH, APPLY_SKETCH = range(41, 44)

NOTE_TYPE = "MarkdownNote"
"""The frontend's own note node (not a backend node: it is left out of the API format)."""
POSITIVE_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")
NOTE_COLOR = ("#432", "#653")


@dataclass(frozen=True)
class Node:
    """One node; ``widgets`` holds only the values that differ from the node type's own defaults."""

    id: int
    type: str
    title: str
    pos: tuple[int, int]
    size: tuple[int, int]
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    models: tuple[dict[str, str], ...] = ()
    color: tuple[str, str] | None = None
    help: dict[str, str] = field(default_factory=dict)
    """Plain-words help for this node's widgets where the node type's general help does not fit."""

    def __post_init__(self) -> None:
        spec = node_type(self.type)
        inputs = set(spec.widgets) | {s.name for s in spec.sockets}
        unknown = sorted((set(self.widgets) - set(spec.widgets)) | (set(self.links) - inputs))
        if unknown:
            raise ValueError(
                f"node {self.id} ({self.type}) has no input {', '.join(unknown)}; its inputs are {sorted(inputs)}"
            )

    def value(self, name: str) -> Any:
        """A widget's value: the workflow's own, else the node type's default."""
        if name in self.widgets:
            return self.widgets[name]
        defaults = node_type(self.type).defaults
        if name not in defaults:
            raise ValueError(f"node {self.id} ({self.type}): widget {name!r} has no default; give it a value")
        return defaults[name]

    def linked_widgets(self) -> list[str]:
        """Widgets fed by a link (the frontend's widget inputs), in widget order; they follow the sockets."""
        return [name for name in node_type(self.type).widgets if name in self.links]


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    about: str
    nodes: tuple[Node, ...]
    note_pos: tuple[int, int] = (-460, 0)
    note_size: tuple[int, int] = (420, 1000)
    pictures: tuple[str, ...] = ()
    """The example pictures the thumbnail shows (empty: the conditioning node's start and end pictures)."""
    size: tuple[int, int] | None = None
    """The video size the thumbnail is cropped to (None: the conditioning node's)."""
    extra_notes: tuple[str, ...] = ()
    """Further sections of the note (markdown), after the model and pictures."""
    model_note: str | None = None
    """The note's Model section, where the loader's file is not an original model.ckpt (None: the download hint's)."""


def sorted_nodes(nodes: list[Node]) -> tuple[Node, ...]:
    return tuple(sorted(nodes, key=lambda n: n.id))


def is_stored(name: str) -> bool:
    """Whether a widget is a backend input (the frontend-only CONTROL and UPLOAD widgets are not)."""
    return name not in (CONTROL, UPLOAD)
