"""Cancel in every loop of the pack, through the real executor (in-process): the run ends as interrupted (not as an
error) in the node whose loop was running, the next prompt runs to the end.

Since ComfyUI 0.33.0 the host's ``InterruptProcessingException`` derives from ``BaseException``, so an
``except Exception`` no longer sees Cancel: these runs show that no loop swallows it or turns it into an error,
on whichever release the suite runs. The sampler's own Cancel through ``POST /interrupt`` is in
``test_server.py``, the keyframe chain's between segments in ``long_video/test_keyframe_chain.py``, the
downloads' and the director's beside their nodes.
"""

from __future__ import annotations

from typing import Any

import pytest

from support.new_workflow_host import provision, tiny
from support.workflow_runs import saved_video, video_facts

CASES = [
    ("long_video_512", "DynamiCrafterLongVideo"),
    ("keyframe_chain_512", "DynamiCrafterKeyframeChain"),
    ("tooncrafter_512", "DynamiCrafterToonCrafterDecode"),
    ("tooncrafter_512", "DynamiCrafterSampler"),
]


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    return provision(comfy_host, tmp_path_factory)


def _cancel_in(prompt: dict[str, Any], class_type: str, monkeypatch) -> list[int]:
    """Press Cancel at the first progress report of the node of ``class_type``; the reports it made."""
    import comfy.model_management as mm
    import comfy.utils
    from comfy_execution.utils import get_executing_context

    seen: list[int] = []

    def hook(value: int, total: int, preview: Any, **_: Any) -> None:
        context = get_executing_context()
        if context is not None and prompt[context.node_id]["class_type"] == class_type:
            seen.append(value)
            mm.interrupt_current_processing(True)

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    return seen


@pytest.mark.parametrize("name, class_type", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_cancel_stops_the_loop_and_the_next_prompt_runs(host, monkeypatch, name, class_type):
    import comfy.model_management as mm

    prompt = tiny(name)
    assert class_type in {node["class_type"] for node in prompt.values()}
    for node in prompt.values():  # sampling loops long enough that Cancel lands mid-way
        if "steps" in node["inputs"]:
            node["inputs"]["steps"] = 3
    seen = _cancel_in(prompt, class_type, monkeypatch)
    run = host.run_prompt(prompt, check=False)

    assert not run.success
    events = dict(run.messages)
    assert "execution_error" not in events, events.get("execution_error")
    interrupted = events["execution_interrupted"]
    assert prompt[interrupted["node_id"]]["class_type"] == class_type
    assert len(seen) == 1, f"{class_type} went on after Cancel: progress {seen}"
    assert not mm.processing_interrupted()  # the executor cleared the flag for the next prompt

    monkeypatch.undo()
    after = host.run_prompt(tiny(name))
    assert video_facts(saved_video(host, after))["frames"] > 0
