"""Running a shipped workflow in the in-process host and reading what it saved: the tiny size the runs use,
a node's inputs by class type, the saved video's frames, size, fps and audio, and a run at a node's strength
against the same run at strength 0."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import av

WIDTH, HEIGHT, STEPS, FPS = 128, 64, 1, 8.0
SKETCH_ENCODER = "sketch_encoder.ckpt"  # the name the sketch workflow loads


def of_type(prompt: dict[str, Any], class_type: str) -> dict[str, Any]:
    (node,) = [n["inputs"] for n in prompt.values() if n["class_type"] == class_type]
    return node


def saved_video(host, run) -> Path:
    files = [f for node in run.ui.values() for f in node.get("images", [])]
    assert len(files) == 1, run.ui
    return Path(host.folder_paths.get_output_directory()) / files[0].get("subfolder", "") / files[0]["filename"]


def video_facts(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        facts = {
            "frames": sum(1 for _ in container.decode(stream)),
            "size": (stream.width, stream.height),
            "fps": float(stream.average_rate),
            "audio": None,
        }
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(audio))
            facts["audio"] = samples / audio.rate
    return facts


def run_timed(host, prompt: dict[str, Any], **kw: Any):
    start = time.perf_counter()
    run = host.run_prompt(prompt, **kw)
    print(f"\nran in {time.perf_counter() - start:.1f} s")
    return run


def sampled_with_strength(host, prompt: dict[str, Any], class_type: str, strength: str) -> list[Any]:
    """The sampler's latent and the saved video's frame count at the workflow's strength, then at strength 0."""
    (sampler,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterSampler"]
    results = []
    for value in (of_type(prompt, class_type)[strength], 0.0):
        of_type(prompt, class_type)[strength] = value
        run = run_timed(
            host, prompt, outputs=[sampler, *[k for k, n in prompt.items() if n["class_type"] == "SaveVideo"]]
        )
        assert video_facts(saved_video(host, run))["frames"] == 16
        results.append(run.output(sampler)["samples"])
    return results
