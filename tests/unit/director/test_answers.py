"""Reading model answers (JSON, prompts), storyboard and advisor parsing, and the pictures sent to the model."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

import support.director_fakes as H
from director import advisor, answers, client, media, storyboard
from director.errors import DirectorError


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Sure! Here is the plan:\n```json\n{"a": 1}\n```\nEnjoy.',
        'Here you go: {"a": 1} -- hope it helps',
    ],
)
def test_extract_json_finds_the_object(text):
    assert answers.extract_json(text) == {"a": 1}


def test_malformed_json_error_quotes_the_first_200_characters():
    text = '{"style": "noir", "scenes": ["a", "b",' + "x" * 400
    with pytest.raises(DirectorError) as info:
        answers.extract_json(text)
    message = str(info.value)
    assert "not the JSON" in message and repr(text[:200] + "...") in message
    assert text[:201] not in message


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('"A fox runs through snow, camera pans left."', "A fox runs through snow, camera pans left."),
        ("Prompt: a fox runs\nthrough snow.", "a fox runs through snow."),
        ("```\nA fox runs.\n```", "A fox runs."),
        ("  Motion prompt:  “Leaves drift down.”  ", "Leaves drift down."),
    ],
)
def test_one_line_cleans_prompts(raw, expected):
    assert answers.one_line(raw) == expected


def test_storyboard_appends_the_shared_style_line():
    answer = (
        '```json\n{"style": "hand-painted watercolor, warm dusk light.", "scenes": '
        '["A girl opens a red door.", {"prompt": "She walks into a garden, slow pan."}, "Birds lift off\\n the fence."]}\n```'
    )
    board = storyboard.parse_storyboard(answer, 3)
    assert board.style == "hand-painted watercolor, warm dusk light"
    assert board.prompts == [
        "A girl opens a red door. Style: hand-painted watercolor, warm dusk light.",
        "She walks into a garden, slow pan. Style: hand-painted watercolor, warm dusk light.",
        "Birds lift off the fence. Style: hand-painted watercolor, warm dusk light.",
    ]
    assert board.text.split("\n") == board.prompts


def test_storyboard_user_style_wins_and_extra_scenes_are_dropped():
    board = storyboard.parse_storyboard('{"style": "model style", "scenes": ["a", "b", "c"]}', 2, style_override="ink")
    assert board.prompts == ["a. Style: ink.", "b. Style: ink."]


def test_storyboard_too_few_scenes_or_no_list_is_an_error():
    with pytest.raises(DirectorError, match=r"asked for 4 scenes but the model wrote 2"):
        storyboard.parse_storyboard('{"style": "s", "scenes": ["a", "b"]}', 4)
    with pytest.raises(DirectorError, match=r"no list of scenes"):
        storyboard.parse_storyboard('{"style": "s", "scenes": "a then b"}', 2)
    with pytest.raises(DirectorError, match=r"not the JSON"):
        storyboard.parse_storyboard("Scene 1: a girl. Scene 2: a door.", 2)


def test_storyboard_plan_against_fake_server(monkeypatch):
    with H.FakeOpenAI() as fake:
        fake.answer('{"style": "claymation", "scenes": ["A snail climbs a leaf.", "Rain begins to fall."]}')
        fake.allow(monkeypatch)
        conn = client.DirectorConnection(base_url=fake.base_url, model="m", retry_delay_s=0.0)
        style_url = media.png_data_url(torch.rand(1, 8, 8, 3))
        board = storyboard.plan(conn, "A snail's rainy day.", 2, style_image_url=style_url, seed=5)
        body = fake.requests[0].body
    assert board.prompts == ["A snail climbs a leaf. Style: claymation.", "Rain begins to fall. Style: claymation."]
    assert "exactly 2" in body["messages"][0]["content"] and body["seed"] == 5
    parts = body["messages"][1]["content"]
    assert parts[0]["type"] == "text" and "A snail's rainy day." in parts[0]["text"]
    assert parts[-1] == {"type": "image_url", "image_url": {"url": style_url}}


CURRENT = advisor.Settings(steps=50, cfg=7.5, fs=24, prompt="a cat sits")


def test_advice_is_parsed_and_clamped():
    advice = advisor.parse_advice(
        '{"steps": 500, "cfg": 0.2, "fs": "12", "prompt": "A cat turns its head, static camera.", '
        '"explanation": "More motion needed."}',
        CURRENT,
    )
    assert advice.settings == advisor.Settings(100, 1.0, 12, "A cat turns its head, static camera.")
    assert "steps 500 was clamped to 100" in advice.explanation and "cfg 0.2 was clamped to 1" in advice.explanation
    assert advice.explanation.startswith("More motion needed.")
    assert "steps 50 -> 100" in advice.explanation and "new prompt" in advice.explanation


def test_advice_keeps_current_values_for_missing_or_bad_fields():
    advice = advisor.parse_advice('```json\n{"cfg": "lots", "steps": 40.6}\n```', CURRENT)
    assert advice.settings == advisor.Settings(41, 7.5, 24, "a cat sits")
    assert "kept cfg 7.5" in advice.explanation
    with pytest.raises(DirectorError, match="not a JSON object"):
        advisor.parse_advice("[1, 2]", CURRENT)


def test_advisor_sends_one_strip_of_evenly_spaced_frames(monkeypatch):
    frames = torch.zeros(16, 10, 12, 3)
    for n in range(16):
        frames[n] = n / 15
    with H.FakeOpenAI() as fake:
        fake.answer('{"steps": 60, "cfg": 6, "fs": 20, "prompt": "p", "explanation": "e"}')
        fake.allow(monkeypatch)
        conn = client.DirectorConnection(base_url=fake.base_url, model="m", retry_delay_s=0.0)
        advice = advisor.advise(conn, frames, CURRENT, frame_count=4)
        body = fake.requests[0].body
    assert advice.settings == advisor.Settings(60, 6.0, 20, "p")
    text, image = body["messages"][1]["content"]
    assert "frames 1, 6, 11, 16 of 16" in text["text"] and '"cfg": 7.5' in text["text"]
    strip = Image.open(io.BytesIO(base64.b64decode(image["image_url"]["url"].split(",", 1)[1])))
    assert strip.size == (4 * 12 + 3 * 4, 10)
    # left to right in time: the first tile is frame 0 (black), the last is frame 15 (white)
    assert strip.getpixel((0, 0)) == (0, 0, 0) and strip.getpixel((strip.width - 1, 0)) == (255, 255, 255)


def test_pick_frames_and_image_conversion():
    assert media.pick_frames(16, 4) == [0, 5, 10, 15]
    assert media.pick_frames(3, 4) == [0, 1, 2]
    assert media.pick_frames(9, 1) == [0]
    url = media.png_data_url(torch.rand(2, 300, 2000, 4), max_side=1000)  # RGBA batch, big: first image, downscaled
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert picture.size == (1000, 150) and picture.mode == "RGB"
    with pytest.raises(DirectorError):
        media.png_data_url(torch.rand(8, 8))
