"""A Keyframe Chain's pictures, counted when a prompt is queued.

The chain's keyframes come through a wire, so the node's queue-time check alone cannot know how many there
are, and a 41-keyframe chain passed a limit that refused the same frames as one Long Video. ComfyUI's
on-prompt hook (``PromptServer.add_on_prompt_handler``) sees the whole prompt just before it is validated:
:func:`on_prompt` counts the pictures where the graph says (``LoadImage``: the file's frames; ``ImageBatch``:
the sum; ``RepeatImageBatch``: ``amount`` times; ``ImageFromBatch``: its ``length``; ``EmptyImage``: its
``batch_size``) and remembers the count for the chain's own check by node id and sizes. Other sources leave
the count unknown: the check when the node runs (on the real pictures) still holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .adapter.validation import chain_problem

log = logging.getLogger(__name__)

CHAIN_NODE = "DynamiCrafterKeyframeChain"
SIZE_INPUTS = ("width", "height", "frames")
_MAX_DEPTH = 64
_MAX_REMEMBERED = 256
_counts: dict[tuple[str, str], int] = {}


def _key(node_id: Any, values: Mapping[str, Any]) -> tuple[str, str]:
    return str(node_id), json.dumps([values.get(name) for name in SIZE_INPUTS])


def _load_image_frames(name: Any) -> int | None:
    try:
        import folder_paths
        from PIL import Image

        path = folder_paths.get_annotated_filepath(str(name))
        with Image.open(path) as picture:
            return max(int(getattr(picture, "n_frames", 1)), 1)
    except Exception:  # noqa: BLE001  (a missing or odd file: the host's own check of LoadImage reports it)
        return None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def count_images(prompt: Mapping[str, Any], link: Any, depth: int = 0) -> int | None:
    """How many pictures the output ``link`` (``[node_id, index]``) of ``prompt`` holds, or None when unknown."""
    if depth > _MAX_DEPTH or not (isinstance(link, list) and len(link) == 2 and link[1] == 0):
        return None
    node = prompt.get(str(link[0]))
    inputs = node.get("inputs") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return None
    kind = node.get("class_type")
    if kind == "LoadImage":
        return _load_image_frames(inputs.get("image"))
    if kind == "EmptyImage":
        return _whole(inputs.get("batch_size"))
    if kind == "ImageBatch":
        first, second = (count_images(prompt, inputs.get(name), depth + 1) for name in ("image1", "image2"))
        return first + second if first is not None and second is not None else None
    if kind == "RepeatImageBatch":
        inner, amount = count_images(prompt, inputs.get("image"), depth + 1), _whole(inputs.get("amount"))
        return inner * amount if inner is not None and amount is not None else None
    if kind == "ImageFromBatch":
        inner, start, length = (
            count_images(prompt, inputs.get("image"), depth + 1),
            _whole(inputs.get("batch_index")),
            _whole(inputs.get("length")),
        )
        return min(length, max(inner - start, 1)) if None not in (inner, start, length) else None
    return None


def on_prompt(json_data: Any) -> Any:
    """The on-prompt handler: remember the keyframe count of every chain whose pictures can be counted."""
    try:
        prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
        for node_id, node in (prompt or {}).items():
            if isinstance(node, dict) and node.get("class_type") == CHAIN_NODE and isinstance(node.get("inputs"), dict):
                count = count_images(prompt, node["inputs"].get("keyframes"))
                if count is not None:
                    if len(_counts) >= _MAX_REMEMBERED:
                        _counts.clear()
                    _counts[_key(node_id, node["inputs"])] = count
    except Exception as error:  # noqa: BLE001  (a hook must never stop a prompt; the run-time check holds)
        log.debug("DynamiCrafter: keyframes not counted when queued (%s)", type(error).__name__)
    return json_data


def queued_keyframes(node_id: Any, values: Mapping[str, Any]) -> int | None:
    """The count :func:`on_prompt` found for this chain node with these sizes, or None."""
    return _counts.get(_key(node_id, values))


def queued_chain_problem(node_id: Any, values: Mapping[str, Any]) -> str | None:
    """The chain's bound and memory check with the count found when queued; None when it is not known."""
    count = queued_keyframes(node_id, values) if node_id is not None else None
    sizes = [values.get(name) for name in SIZE_INPUTS]
    if count is None or not all(_whole(size) for size in sizes):
        return None
    return chain_problem(count, *sizes)


def register() -> None:
    """Install :func:`on_prompt` on the running server (once); nothing without one (tests in-process)."""
    try:
        from server import PromptServer

        handlers = PromptServer.instance.on_prompt_handlers
    except Exception:  # noqa: BLE001  (no server in this process)
        return
    if on_prompt not in handlers:
        PromptServer.instance.add_on_prompt_handler(on_prompt)
