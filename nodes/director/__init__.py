"""Optional AI director nodes: a vision-language model (any OpenAI-compatible endpoint) writes motion prompts,
plans storyboards, suggests settings and picks a soundtrack. Needs the optional ``openai`` package at run time."""

from __future__ import annotations

from .comfy_nodes import NODES

__all__ = ["NODES"]
