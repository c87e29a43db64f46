"""What the director asks the model: the instructions and the chat messages of each task."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

DYNAMICRAFTER_PROMPT_RULES = (
    "DynamiCrafter animates one still picture into a clip of about two seconds, guided by a short text prompt. "
    "Good prompts are one or two plain sentences, at most 40 words: name the main subject as it appears in the "
    "picture, say how it moves (gentle, physically plausible motion), and say what the camera does (static, "
    "slow pan, slow zoom in). Describe only what can move in this picture; no scene cuts, no text overlays, "
    "no quality tags, no lists, no quotes."
)

Message = dict[str, Any]


def _image_part(data_url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url}}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def describe_messages(image_url: str, hint: str = "", style: str = "") -> list[Message]:
    """Ask for a motion prompt for one picture."""
    system = (
        "You write motion prompts for an image-to-video model. "
        + DYNAMICRAFTER_PROMPT_RULES
        + " Answer with the prompt only."
    )
    request = "Write the motion prompt for this picture."
    if hint.strip():
        request += f" The user wants: {hint.strip()}"
    if style.strip():
        request += f" Keep this style in mind: {style.strip()}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [_text_part(request), _image_part(image_url)]},
    ]


def storyboard_messages(story: str, scenes: int, style: str = "", style_image_url: str | None = None) -> list[Message]:
    """Ask for ``scenes`` scene prompts and one shared style line, as JSON."""
    system = (
        "You are a film director planning a short film made of separate image-to-video clips. "
        + DYNAMICRAFTER_PROMPT_RULES
        + f" Split the user's story into exactly {scenes} consecutive scenes, one clip each, and write one such "
        "prompt per scene. Also write one short style line (medium, palette, lighting, lens; at most 20 words) "
        "that every clip shares so the film looks consistent; do not repeat the style inside the scene prompts. "
        'Answer with JSON only, no code fences: {"style": "...", "scenes": ["...", "..."]}'
    )
    request = f"Story:\n{story.strip()}\n\nNumber of scenes: {scenes}."
    if style.strip():
        request += f"\nThe style line must follow the user's style: {style.strip()}"
    content: list[dict[str, Any]] = [_text_part(request)]
    if style_image_url:
        content.append(_text_part("Take the look of this reference picture for the style line:"))
        content.append(_image_part(style_image_url))
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def advisor_messages(
    strip_url: str, settings: dict[str, Any], frame_numbers: Sequence[int], total_frames: int, goal: str = ""
) -> list[Message]:
    """Ask for better settings after looking at frames of a finished clip, as JSON."""
    system = (
        "You review clips made by DynamiCrafter, an image-to-video diffusion model, and suggest settings for "
        "the next run. Settings: steps (DDIM sampling steps, 10-100, default 50; more = cleaner detail, "
        "slower), cfg (text guidance, 1-15, default 7.5; higher follows the prompt harder but can flicker or "
        "burn colours), fs (frame stride or frame rate conditioning, 1-60; higher = more motion for the "
        "256 model, for 512/1024 it is the fps the motion is made for), prompt (the motion prompt). "
        + DYNAMICRAFTER_PROMPT_RULES
        + " Change only what helps; keep a setting when it is fine. Answer with JSON only, no code fences: "
        '{"steps": int, "cfg": number, "fs": int, "prompt": "...", "explanation": "one to three sentences"}'
    )
    shown = ", ".join(str(n + 1) for n in frame_numbers)
    request = (
        f"The picture shows frames {shown} of {total_frames}, left to right in time. "
        f"Settings used: {json.dumps(settings, ensure_ascii=False)}."
    )
    if goal.strip():
        request += f" The user wants: {goal.strip()}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [_text_part(request), _image_part(strip_url)]},
    ]


def soundtrack_messages(description: str, track_lines: Sequence[str]) -> list[Message]:
    """Ask which numbered track suits the clip, as JSON."""
    system = (
        "You pick background music for a short video clip from the user's own numbered list of audio files. "
        "Choose the one whose name and tags fit the clip's mood, pace and subject best. Answer with JSON only, "
        'no code fences: {"index": <number from the list>, "reason": "one sentence"}'
    )
    listing = "\n".join(track_lines)
    request = f"Clip: {description.strip()}\n\nTracks:\n{listing}"
    return [{"role": "system", "content": system}, {"role": "user", "content": request}]
