"""The director's soundtrack node: a track from the user's audio folder, chosen by the model and cut to the clip."""

from __future__ import annotations

import logging
from typing import Any

import torch
from comfy_api.latest import io

from ...director import audio, soundtrack
from ...director.client import DirectorConnection
from ...director.errors import DirectorError
from ...director.policy import AUDIO_DIRS_ENV
from .node_inputs import (
    CATEGORY,
    DirectorNode,
    abort_check,
    check_connection,
    connection_input,
    input_audio_roots,
    seed_input,
    temperature_input,
)

log = logging.getLogger(__name__)


class DirectorSoundtrack(DirectorNode):
    """Clip description + the user's music folder -> the chosen track as AUDIO, cut to the clip."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DynamiCrafterDirectorSoundtrack",
            display_name="Director: Pick Soundtrack from Folder",
            category=CATEGORY,
            description=(
                "Lets the model choose a track from your audio folder by its name and tags (tags.json or "
                "tags.txt beside the files; only names and tags are sent, never audio), then trims it to the "
                "clip with a fade-out, ready for Create Video."
            ),
            inputs=[
                connection_input(),
                io.String.Input(
                    "description", default="", multiline=True, tooltip="What the clip shows (e.g. the motion prompt)."
                ),
                io.String.Input(
                    "folder",
                    default="music",
                    tooltip="Folder inside ComfyUI's input folder (e.g. 'music' for input/music) or "
                    f"inside a folder the admin lists in {AUDIO_DIRS_ENV}, holding your audio "
                    "files (wav, flac, mp3, ogg, m4a...), optionally with tags.json "
                    '{"file.mp3": "calm, piano"} or tags.txt (\'file.mp3: calm, piano\' per '
                    "line).",
                ),
                io.Float.Input(
                    "seconds",
                    default=2.0,
                    min=0.1,
                    max=audio.MAX_SECONDS,
                    step=0.1,
                    tooltip="Clip length in seconds (used when no frames are connected).",
                ),
                io.Float.Input(
                    "fps",
                    default=8.0,
                    min=0.1,
                    max=240.0,
                    step=0.1,
                    tooltip="Frame rate of the video, to turn connected frames into seconds.",
                ),
                io.Image.Input(
                    "frames",
                    optional=True,
                    tooltip="Optional: the clip's frames; the length is then frame count / fps "
                    f"(at most {audio.MAX_SECONDS:g} s).",
                ),
                io.Float.Input(
                    "fade_out",
                    default=0.5,
                    min=0.0,
                    max=10.0,
                    step=0.1,
                    tooltip="Seconds of fade-out at the end of the cut.",
                ),
                temperature_input(),
                seed_input(),
            ],
            outputs=[
                io.Audio.Output("audio", display_name="audio", tooltip="The chosen track, cut to the clip length."),
                io.String.Output("track", display_name="track", tooltip="File name of the chosen track."),
                io.String.Output("reason", display_name="reason", tooltip="Why the model chose it."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, folder: str = "", **_: Any) -> str:
        """Re-run when files in the folder change, not only when the widgets do."""
        try:
            tracks = soundtrack.scan_library(folder, input_audio_roots())
            return "|".join(f"{t.name}:{t.path.stat().st_mtime_ns}" for t in tracks)
        except (DirectorError, OSError):
            return ""

    @classmethod
    def execute(
        cls,
        director: DirectorConnection,
        description: str,
        folder: str,
        seconds: float,
        fps: float,
        fade_out: float,
        temperature: float,
        seed: int,
        frames: torch.Tensor | None = None,
    ) -> io.NodeOutput:
        conn = check_connection(director)
        if frames is not None:
            count = int(frames.shape[0])
            length = audio.check_length(count / fps if fps > 0 else float("nan"), f"{count} frames at {fps:g} fps")
        else:
            length = audio.check_length(seconds, "the seconds input")
        tracks = soundtrack.scan_library(folder, input_audio_roots())
        track, reason = soundtrack.choose(conn, description, tracks, temperature, seed, abort_check)
        waveform, rate = audio.decode(track.path, max_seconds=length)
        clip = audio.fit_length(waveform, rate, length, fade_out)
        log.info("director: soundtrack %s, %.2f s at %d Hz", track.name, length, rate)
        return io.NodeOutput(audio.to_comfy_audio(clip, rate), track.name, reason)
