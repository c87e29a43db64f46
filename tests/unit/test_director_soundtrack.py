"""Soundtrack pick: the user's folder with tags, PyAV decoding of WAV/FLAC/MP3, cut to the clip with a fade-out."""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch


import support.director_fakes as H  # noqa: E402
soundtrack = H.director("soundtrack")
audio = H.director("audio")
client = H.director("client")
DirectorError = H.director("errors").DirectorError


def write_tone(path: Path, seconds: float, rate: int, freq: float, channels: int = 2, codec: str | None = None) -> None:
    """A sine tone written with PyAV (codec from the extension: wav, flac, mp3)."""
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame"}[path.suffix]
    layout = "stereo" if channels == 2 else "mono"
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.time_base = Fraction(1, rate)
        block = 1152 if codec == "libmp3lame" else 1024
        pts = 0
        for start in range(0, len(tone), block):
            chunk = np.tile(tone[start:start + block], (channels, 1))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("music")
    write_tone(folder / "calm_piano_dusk.wav", 1.0, 22050, 220.0, channels=1)
    write_tone(folder / "epic-drums.flac", 1.0, 32000, 440.0)
    write_tone(folder / "ocean waves.mp3", 1.5, 44100, 330.0)
    (folder / "notes.md").write_text("not audio")
    return folder


def test_scan_uses_file_names_or_sidecar_tags(library, tmp_path):
    tracks = soundtrack.scan_library(library)
    assert [t.name for t in tracks] == ["calm_piano_dusk.wav", "epic-drums.flac", "ocean waves.mp3"]
    assert [t.tags for t in tracks] == ["calm piano dusk", "epic drums", "ocean waves"]
    assert soundtrack.track_lines(tracks)[1] == "2. epic-drums.flac - epic drums"

    for name in ("a.wav", "b.mp3"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "tags.txt").write_text("# comment\na.wav: sad, strings\nB.MP3\tupbeat synth\n")
    assert [t.tags for t in soundtrack.scan_library(tmp_path)] == ["sad, strings", "upbeat synth"]
    (tmp_path / "tags.json").write_text(json.dumps({"a.wav": ["lofi", "rain"]}))  # json wins over txt
    assert [t.tags for t in soundtrack.scan_library(tmp_path)] == ["lofi, rain", "b"]
    (tmp_path / "tags.json").write_text("{broken")
    with pytest.raises(DirectorError, match="tags.json is not valid JSON"):
        soundtrack.scan_library(tmp_path)


def test_scan_errors_name_the_folder(tmp_path):
    with pytest.raises(DirectorError, match="music folder not found"):
        soundtrack.scan_library(tmp_path / "missing")
    with pytest.raises(DirectorError, match=rf"no audio files in {tmp_path}"):
        soundtrack.scan_library(tmp_path)
    with pytest.raises(DirectorError, match="no music folder given"):
        soundtrack.scan_library("  ")


@pytest.mark.parametrize("name, rate, channels", [("calm_piano_dusk.wav", 22050, 1), ("epic-drums.flac", 32000, 2),
                                                  ("ocean waves.mp3", 44100, 2)])
def test_decode_with_pyav(library, name, rate, channels):
    waveform, sample_rate = audio.decode(library / name)
    assert sample_rate == rate and waveform.dtype == torch.float32 and waveform.shape[0] == channels
    seconds = waveform.shape[1] / rate
    assert seconds == pytest.approx(1.5 if name.endswith(".mp3") else 1.0, abs=0.1)
    assert 0.4 < waveform.abs().max() < 0.6
    short, _ = audio.decode(library / name, max_seconds=0.25)
    assert short.shape[1] == math.ceil(0.25 * rate)


def test_fit_length_trims_pads_and_fades():
    wave = torch.ones(2, 1000)
    cut = audio.fit_length(wave, 100, 4.0, fade_out_s=1.0)
    assert cut.shape == (2, 400)
    assert torch.all(cut[:, :300] == 1) and cut[0, 399] == 0 and torch.all(cut[:, 300:].diff(dim=1) <= 0)
    padded = audio.fit_length(torch.ones(1, 100), 100, 2.0, fade_out_s=0.1)
    assert padded.shape == (1, 200) and padded[0, 99] == 0 and torch.all(padded[:, 100:] == 0) and padded[0, 0] == 1
    value = audio.to_comfy_audio(cut, 100)
    assert value["waveform"].shape == (1, 2, 400) and value["sample_rate"] == 100


@pytest.mark.parametrize("answer, expected", [
    ('{"index": 2, "reason": "big energy"}', "epic-drums.flac"),
    ('```json\n{"index": "3"}\n```', "ocean waves.mp3"),
    ("I would pick ocean waves.mp3 for this.", "ocean waves.mp3"),
    ("Track 1.", "calm_piano_dusk.wav"),
    ('{"index": 1.0}', "calm_piano_dusk.wav"),
])
def test_parse_choice(library, answer, expected):
    track, _ = soundtrack.parse_choice(answer, soundtrack.scan_library(library))
    assert track.name == expected


@pytest.mark.parametrize("answer", ['{"index": 7}', '{"index": 0}', "None of them fit.", "Either 1 or 2.",
                                    '{"index": true}'])
def test_parse_choice_without_a_valid_track_is_a_clear_error(library, answer):
    with pytest.raises(DirectorError, match=r"names no track from the list \(numbers 1 to 3\)"):
        soundtrack.parse_choice(answer, soundtrack.scan_library(library))


def test_choose_sends_names_and_tags_only(library):
    tracks = soundtrack.scan_library(library)
    with H.FakeOpenAI() as fake:
        fake.answer('{"index": 3, "reason": "the clip shows the sea"}')
        conn = client.DirectorConnection(base_url=fake.base_url, model="m", retry_delay_s=0.0)
        track, reason = soundtrack.choose(conn, "Waves roll onto a beach at sunset.", tracks)
        body = fake.requests[0].body
    assert track.name == "ocean waves.mp3" and reason == "the clip shows the sea"
    user = body["messages"][1]["content"]
    assert "Waves roll onto a beach at sunset." in user
    assert "1. calm_piano_dusk.wav - calm piano dusk" in user and "3. ocean waves.mp3 - ocean waves" in user
    assert str(library) not in json.dumps(body)  # no local paths leave the machine
