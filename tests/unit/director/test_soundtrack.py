"""Soundtrack pick: the user's folder with tags, PyAV decoding of WAV/FLAC/MP3, cut to the clip with a fade-out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import support.director_fakes as H
from director import audio, client, soundtrack
from director.errors import DirectorError
from support.audio_files import write_tone


def scan(folder: str | Path) -> list:
    """The folder's tracks, with the folder's parent as the one allowed root."""
    return soundtrack.scan_library(str(folder), [Path(str(folder).strip() or ".").resolve().parent])


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("music")
    write_tone(folder / "calm_piano_dusk.wav", 1.0, 22050, 220.0, channels=1)
    write_tone(folder / "epic-drums.flac", 1.0, 32000, 440.0)
    write_tone(folder / "ocean waves.mp3", 1.5, 44100, 330.0)
    (folder / "notes.md").write_text("not audio")
    return folder


def test_scan_uses_file_names_or_sidecar_tags(library, tmp_path):
    tracks = scan(library)
    assert [t.name for t in tracks] == ["calm_piano_dusk.wav", "epic-drums.flac", "ocean waves.mp3"]
    assert [t.tags for t in tracks] == ["calm piano dusk", "epic drums", "ocean waves"]
    assert soundtrack.track_lines(tracks)[1] == "2. epic-drums.flac - epic drums"

    for name in ("a.wav", "b.mp3"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "tags.txt").write_text("# comment\na.wav: sad, strings\nB.MP3\tupbeat synth\n")
    assert [t.tags for t in scan(tmp_path)] == ["sad, strings", "upbeat synth"]
    (tmp_path / "tags.json").write_text(json.dumps({"a.wav": ["lofi", "rain"]}))  # json wins over txt
    assert [t.tags for t in scan(tmp_path)] == ["lofi, rain", "b"]
    (tmp_path / "tags.json").write_text("{broken")
    with pytest.raises(DirectorError, match="tags.json is not valid JSON"):
        scan(tmp_path)


def test_scan_errors_name_the_folder(tmp_path):
    with pytest.raises(DirectorError, match="music folder not found"):
        scan(tmp_path / "missing")
    with pytest.raises(DirectorError, match=rf"no audio files in the music folder '{tmp_path}'"):
        scan(tmp_path)
    with pytest.raises(DirectorError, match="no music folder given"):
        scan("  ")


@pytest.mark.parametrize(
    "name, rate, channels",
    [("calm_piano_dusk.wav", 22050, 1), ("epic-drums.flac", 32000, 2), ("ocean waves.mp3", 44100, 2)],
)
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


@pytest.mark.parametrize(
    "answer, expected",
    [
        ('{"index": 2, "reason": "big energy"}', "epic-drums.flac"),
        ('```json\n{"index": "3"}\n```', "ocean waves.mp3"),
        ("I would pick ocean waves.mp3 for this.", "ocean waves.mp3"),
        ("Track 1.", "calm_piano_dusk.wav"),
        ('{"index": 1.0}', "calm_piano_dusk.wav"),
    ],
)
def test_parse_choice(library, answer, expected):
    track, _ = soundtrack.parse_choice(answer, scan(library))
    assert track.name == expected


@pytest.mark.parametrize(
    "answer", ['{"index": 7}', '{"index": 0}', "None of them fit.", "Either 1 or 2.", '{"index": true}']
)
def test_parse_choice_without_a_valid_track_is_a_clear_error(library, answer):
    with pytest.raises(DirectorError, match=r"names no track from the list \(numbers 1 to 3\)"):
        soundtrack.parse_choice(answer, scan(library))


def test_choose_sends_names_and_tags_only(library, monkeypatch):
    tracks = scan(library)
    with H.FakeOpenAI() as fake:
        fake.answer('{"index": 3, "reason": "the clip shows the sea"}')
        fake.allow(monkeypatch)
        conn = client.DirectorConnection(base_url=fake.base_url, model="m", retry_delay_s=0.0)
        track, reason = soundtrack.choose(conn, "Waves roll onto a beach at sunset.", tracks)
        body = fake.requests[0].body
    assert track.name == "ocean waves.mp3" and reason == "the clip shows the sea"
    user = body["messages"][1]["content"]
    assert "Waves roll onto a beach at sunset." in user
    assert "1. calm_piano_dusk.wav - calm piano dusk" in user and "3. ocean waves.mp3 - ocean waves" in user
    assert str(library) not in json.dumps(body)  # no local paths leave the machine


def _outside_and_inside(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root holding one track, and a secret folder beside it with a track and tags.json."""
    root, secret = tmp_path / "input", tmp_path / "private"
    for folder in (root / "music", secret):
        folder.mkdir(parents=True)
        write_tone(folder / "tone.wav", 0.1, 8000, 440.0, channels=1)
    (secret / "tags.json").write_text(json.dumps({"tone.wav": "PRIVATE-TAG"}))
    return root.resolve(), secret


def test_relative_folder_is_found_in_the_allowed_roots(tmp_path):
    root, secret = _outside_and_inside(tmp_path)
    assert [t.path for t in soundtrack.scan_library("music", [root])] == [root / "music" / "tone.wav"]
    assert [t.name for t in soundtrack.scan_library(str(root / "music"), [root])] == ["tone.wav"]
    # an admin folder: found by its absolute path and by a path relative to it
    assert [t.name for t in soundtrack.scan_library(str(secret), [root, secret.resolve()])] == ["tone.wav"]
    (secret / "music").mkdir()
    write_tone(secret / "music" / "admin.wav", 0.1, 8000, 440.0, channels=1)
    (secret / "jazz").mkdir()
    write_tone(secret / "jazz" / "sax.wav", 0.1, 8000, 440.0, channels=1)
    roots = [root, secret.resolve()]
    assert [t.name for t in soundtrack.scan_library("music", roots)] == ["tone.wav"]  # the input folder first
    assert [t.name for t in soundtrack.scan_library("jazz", roots)] == ["sax.wav"]


@pytest.mark.parametrize("escape", ["abs", "dotdot", "dotdot-inside", "symlink-dir", "home", "nul"])
def test_folders_outside_the_roots_are_refused_alike(tmp_path, escape):
    root, secret = _outside_and_inside(tmp_path)
    folder = {
        "abs": str(secret),
        "dotdot": "../private",
        "dotdot-inside": "music/../music",
        "home": "~",
        "nul": "music\x00",
    }.get(escape, "link")
    if escape == "symlink-dir":
        (root / "link").symlink_to(secret, target_is_directory=True)
    with pytest.raises(DirectorError) as info:
        soundtrack.scan_library(folder, [root])
    message = str(info.value)
    assert message.startswith("the music folder must be inside ComfyUI's input folder")
    assert "DYNAMICRAFTER_AUDIO_DIRS" in message and str(secret) not in message and "PRIVATE" not in message


def test_refusal_does_not_tell_whether_an_outside_folder_exists(tmp_path):
    root, secret = _outside_and_inside(tmp_path)
    messages = set()
    for folder in (str(secret), str(tmp_path / "no-such-folder")):
        with pytest.raises(DirectorError) as info:
            soundtrack.scan_library(folder, [root])
        messages.add(str(info.value).replace(folder, "<folder>"))
    assert len(messages) == 1


def test_symlinked_files_and_tags_leading_outside_are_ignored(tmp_path):
    root, secret = _outside_and_inside(tmp_path)
    (root / "music" / "stolen.wav").symlink_to(secret / "tone.wav")
    (root / "music" / "tags.json").symlink_to(secret / "tags.json")
    (root / "music" / "inside.wav").symlink_to(root / "music" / "tone.wav")  # a link inside the root is fine
    tracks = soundtrack.scan_library("music", [root])
    assert [t.name for t in tracks] == ["inside.wav", "tone.wav"]
    assert "PRIVATE-TAG" not in json.dumps(soundtrack.track_lines(tracks))


def test_huge_tags_file_is_refused(tmp_path):
    root, _ = _outside_and_inside(tmp_path)
    (root / "music" / "tags.txt").write_text("tone.wav: " + "x" * (soundtrack.MAX_TAGS_BYTES + 1))
    with pytest.raises(DirectorError, match="tags.txt is larger than 1 MB"):
        soundtrack.scan_library("music", [root])
    (root / "music" / "tags.txt").write_text("tone.wav: " + "y" * 5000)
    (tone,) = soundtrack.scan_library("music", [root])
    assert tone.tags == "y" * soundtrack.MAX_TAG_CHARS


@pytest.mark.parametrize("seconds", [4096 / 0.1, audio.MAX_SECONDS + 0.1, float("nan"), float("inf"), 0.0, -1.0])
def test_soundtrack_length_is_capped(seconds):
    with pytest.raises(DirectorError, match=r"soundtrack (would last|length)"):
        audio.check_length(seconds, "4096 frames at 0.1 fps")
    assert audio.check_length(audio.MAX_SECONDS, "x") == audio.MAX_SECONDS


def test_fit_length_refuses_more_than_the_sample_limit():
    with pytest.raises(DirectorError, match="soundtrack limit"):
        audio.fit_length(torch.zeros(2, 10), 48_000, audio.MAX_SECONDS * 1.01)
    assert audio.fit_length(torch.zeros(2, 10), 48_000, 1.0).shape == (2, 48_000)


def test_decode_refuses_a_file_beyond_the_sample_limit(tmp_path, monkeypatch):
    write_tone(tmp_path / "a.wav", 0.5, 8000, 440.0)
    monkeypatch.setattr(audio, "MAX_SAMPLES", 4000)  # 0.25 s of stereo at 8 kHz would be 4000 samples
    assert audio.decode(tmp_path / "a.wav", max_seconds=0.25)[0].shape == (2, 2000)
    with pytest.raises(DirectorError, match="2 channels at 8000 Hz"):
        audio.decode(tmp_path / "a.wav", max_seconds=0.3)
