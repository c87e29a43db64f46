"""The director's ComfyUI nodes (V3). The logic lives in the sibling modules; this file only maps widgets."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ...director import advisor, storyboard
from ...director.answers import one_line
from ...director.client import PRESETS, DirectorConnection, chat, make_connection
from ...director.errors import DirectorError
from ...director.media import png_data_url
from ...director.policy import HOSTS_ENV, KEYS_ENV
from ...director.prompts import describe_messages
from ...dynamicrafter.config import ORIGINAL_SAMPLING
from .node_inputs import (
    CATEGORY,
    Director,
    DirectorNode,
    abort_check,
    check_connection,
    connection_input,
    seed_input,
    temperature_input,
)
from .soundtrack_node import DirectorSoundtrack

log = logging.getLogger(__name__)


class DirectorConnectionNode(DirectorNode):
    """Where the director's vision-language model lives; the key stays in an environment variable."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDirectorConnection",
            display_name="Director Connection (AI model)",
            category=CATEGORY,
            description=(
                "Connects the AI director nodes to a vision-language model through any OpenAI-compatible "
                "endpoint. The key is read from the environment variable you name, at run time, and is "
                "never stored in the workflow. Only the preset's own variable and those the server admin "
                f"lists in {KEYS_ENV} can be named; a Custom URL must be on a host listed in {HOSTS_ENV}. "
                "Needs `pip install openai`."
            ),
            inputs=[
                io.Combo.Input(
                    "provider",
                    options=list(PRESETS),
                    default="Gemini (OpenAI-compatible)",
                    tooltip="The service: Gemini, GitHub Models, OpenAI, a local Ollama or LM Studio "
                    "server, or Custom (type its URL below).",
                ),
                io.String.Input(
                    "model",
                    default="",
                    tooltip="The model name; empty uses the provider's usual vision model "
                    "(gemini-2.5-flash, openai/gpt-4.1-mini, gpt-4.1-mini, qwen2.5vl).",
                ),
                io.String.Input(
                    "api_key_env",
                    default="",
                    tooltip="The NAME of the environment variable holding your key, never the key "
                    "itself. Empty uses the provider's usual one (GEMINI_API_KEY, GITHUB_TOKEN, "
                    "OPENAI_API_KEY; none for local servers). Other names must be listed by "
                    f"the server admin in {KEYS_ENV}.",
                ),
                io.String.Input(
                    "custom_url",
                    default="",
                    tooltip="Base URL for the Custom provider, e.g. http://127.0.0.1:8080/v1 "
                    f"(ignored by the other providers); its host must be listed in {HOSTS_ENV}.",
                ),
                io.Float.Input(
                    "timeout",
                    default=60.0,
                    min=1.0,
                    max=600.0,
                    step=1.0,
                    tooltip="Seconds to wait for one answer before giving up on that try (all tries of "
                    "one node together stop after 300 s).",
                ),
                io.Int.Input(
                    "retries",
                    default=3,
                    min=0,
                    max=10,
                    tooltip="How many times to try again after a rate limit (HTTP 429), a server error "
                    "(5xx), a timeout or a lost connection.",
                ),
                io.Float.Input(
                    "retry_delay",
                    default=1.0,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                    tooltip="Seconds before the first retry; doubles with each further retry "
                    "(a longer Retry-After from the server wins).",
                ),
            ],
            outputs=[Director.Output(display_name="director", tooltip="Connect to the director nodes.")],
        )

    @classmethod
    def execute(
        cls,
        provider: str,
        model: str,
        api_key_env: str,
        custom_url: str,
        timeout: float,
        retries: int,
        retry_delay: float,
    ) -> io.NodeOutput:
        conn = make_connection(provider, model, api_key_env, custom_url, timeout, retries, retry_delay)
        log.info("director: using %s", conn.describe())
        return io.NodeOutput(conn)


class DirectorDescribeImage(DirectorNode):
    """Picture -> a short DynamiCrafter motion prompt."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDirectorDescribeImage",
            display_name="Director: Describe Image as Motion Prompt",
            category=CATEGORY,
            description="Looks at the picture and writes a short prompt (subject, motion, camera) for DynamiCrafter.",
            inputs=[
                connection_input(),
                io.Image.Input("image", tooltip="The picture to animate (the first one of a batch is used)."),
                io.String.Input(
                    "hint",
                    default="",
                    multiline=True,
                    optional=True,
                    tooltip="Optional: what you want to happen, e.g. 'the waves roll in, slow zoom'.",
                ),
                io.String.Input(
                    "style",
                    default="",
                    optional=True,
                    tooltip="Optional: style words to keep in mind, e.g. 'dreamy, soft light'.",
                ),
                temperature_input(),
                seed_input(),
            ],
            outputs=[io.String.Output(display_name="prompt", tooltip="The motion prompt, one or two sentences.")],
        )

    @classmethod
    def execute(
        cls,
        director: DirectorConnection,
        image: torch.Tensor,
        temperature: float,
        seed: int,
        hint: str = "",
        style: str = "",
    ) -> io.NodeOutput:
        conn = check_connection(director)
        messages = describe_messages(png_data_url(image), hint or "", style or "")
        answer = chat(conn, messages, temperature=temperature, seed=seed, abort_check=abort_check)
        prompt = one_line(answer)
        if not prompt:
            raise DirectorError(f"{conn.endpoint} returned an empty prompt")
        return io.NodeOutput(prompt)


class DirectorStoryboard(DirectorNode):
    """Story -> N scene prompts sharing one style line."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDirectorStoryboard",
            display_name="Director: Story to Scene Prompts",
            category=CATEGORY,
            description=(
                "Splits a story into scene prompts for consecutive clips; every prompt ends with the same "
                "style line so the clips look alike."
            ),
            inputs=[
                connection_input(),
                io.String.Input(
                    "story", default="", multiline=True, tooltip="What happens in the film, in a few sentences."
                ),
                io.Int.Input("scenes", default=4, min=1, max=32, tooltip="How many scenes (clips) to plan."),
                io.String.Input(
                    "style",
                    default="",
                    optional=True,
                    tooltip="Optional: your style words; empty lets the model write the style line.",
                ),
                io.Image.Input(
                    "style_image",
                    optional=True,
                    tooltip="Optional: a picture whose look the style line should describe.",
                ),
                temperature_input(),
                seed_input(),
            ],
            outputs=[
                io.String.Output("prompts", display_name="prompts", tooltip="All scene prompts, one per line."),
                io.String.Output(
                    "prompt_list",
                    display_name="prompt list",
                    is_output_list=True,
                    tooltip="The scene prompts as a list: nodes connected here run once per scene.",
                ),
                io.String.Output("style_line", display_name="style", tooltip="The shared style line."),
            ],
        )

    @classmethod
    def execute(
        cls,
        director: DirectorConnection,
        story: str,
        scenes: int,
        temperature: float,
        seed: int,
        style: str = "",
        style_image: torch.Tensor | None = None,
    ) -> io.NodeOutput:
        conn = check_connection(director)
        style_url = png_data_url(style_image, max_side=768) if style_image is not None else None
        board = storyboard.plan(conn, story, scenes, style or "", style_url, temperature, seed, abort_check)
        return io.NodeOutput(board.text, list(board.prompts), board.style)


class DirectorMotionAdvisor(DirectorNode):
    """Finished clip + its settings -> suggested settings for the next run."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDirectorMotionAdvisor",
            display_name="Director: Suggest Better Settings",
            category=CATEGORY,
            description=(
                "Shows the model a few evenly spaced frames of a finished clip with the settings used, and "
                "returns suggested steps, CFG, fs and prompt to wire into the next run."
            ),
            inputs=[
                connection_input(),
                io.Image.Input("frames", tooltip="The frames of the finished clip (e.g. from VAE Decode)."),
                io.Int.Input(
                    "steps",
                    default=ORIGINAL_SAMPLING.steps,
                    min=1,
                    max=1000,
                    tooltip="The sampling steps that made the clip.",
                ),
                io.Float.Input(
                    "cfg",
                    default=ORIGINAL_SAMPLING.cfg,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    tooltip="The CFG (text guidance) that made the clip.",
                ),
                io.Int.Input(
                    "fs",
                    default=24,
                    min=1,
                    max=1000,
                    tooltip="The fs (frame stride or fps conditioning) that made the clip.",
                ),
                io.String.Input("prompt", default="", multiline=True, tooltip="The prompt that made the clip."),
                io.String.Input(
                    "goal",
                    default="",
                    optional=True,
                    tooltip="Optional: what you want to improve, e.g. 'more motion, less flicker'.",
                ),
                io.Int.Input(
                    "frames_shown",
                    default=4,
                    min=1,
                    max=8,
                    tooltip="How many evenly spaced frames the model sees, side by side in one picture.",
                ),
                temperature_input(),
                seed_input(),
            ],
            outputs=[
                io.Int.Output("next_steps", display_name="steps", tooltip=f"Suggested steps {advisor.STEPS_RANGE}."),
                io.Float.Output("next_cfg", display_name="cfg", tooltip=f"Suggested CFG {advisor.CFG_RANGE}."),
                io.Int.Output("next_fs", display_name="fs", tooltip=f"Suggested fs {advisor.FS_RANGE}."),
                io.String.Output("next_prompt", display_name="prompt", tooltip="Suggested prompt."),
                io.String.Output("explanation", display_name="explanation", tooltip="Why, in plain words."),
            ],
        )

    @classmethod
    def execute(
        cls,
        director: DirectorConnection,
        frames: torch.Tensor,
        steps: int,
        cfg: float,
        fs: int,
        prompt: str,
        frames_shown: int,
        temperature: float,
        seed: int,
        goal: str = "",
    ) -> io.NodeOutput:
        conn = check_connection(director)
        current = advisor.Settings(int(steps), float(cfg), int(fs), prompt)
        advice = advisor.advise(conn, frames, current, frames_shown, goal or "", temperature, seed, abort_check)
        s = advice.settings
        return io.NodeOutput(s.steps, s.cfg, s.fs, s.prompt, advice.explanation)


NODES: list[type[io.ComfyNode]] = [
    DirectorConnectionNode,
    DirectorDescribeImage,
    DirectorStoryboard,
    DirectorMotionAdvisor,
    DirectorSoundtrack,
]
