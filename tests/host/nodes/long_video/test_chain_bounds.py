"""The keyframe chain's bounds in the real host: the whole chain's frames count against
``DYNAMICRAFTER_MAX_RUN_GB`` (41 keyframes of 16-frame segments at 512x320 make 601 frames: refused under a
2 GiB cap, before any keyframe is encoded), and the number of keyframes against ``DYNAMICRAFTER_MAX_KEYFRAMES``;
the messages name the setting and show fractions as they are."""

from __future__ import annotations

import pytest
import torch

from support.long_video_parts import RecordingVAE


@pytest.fixture(scope="module")
def input_error(comfy_host):
    """The pack's own error type, as the host loaded it."""
    return comfy_host.import_pack_module("nodes.adapter.validation").InputError


def _chain(pack, tiny, vae, keyframes, width=512, height=320, frames=16):
    return pack["long_video"].DynamiCrafterKeyframeChain.execute(
        model=tiny["512_interp"],
        positive=tiny["positive"],
        negative=tiny["negative"],
        vae=vae,
        clip_vision=object(),
        keyframes=keyframes,
        width=width,
        height=height,
        frames=frames,
        fs=5,
        seed=0,
        steps=1,
        cfg=7.5,
        eta=1.0,
        guidance_rescale=0.7,
        fit="crop",
    )


def test_a_41_keyframe_chain_is_refused_under_a_2_gib_cap_before_anything_runs(pack, tiny, input_error, monkeypatch):
    monkeypatch.setenv("DYNAMICRAFTER_MAX_RUN_GB", "2")
    vae = RecordingVAE(tiny["vae"])
    keyframes = torch.rand(41, 8, 8, 3)  # the pictures' own size does not matter: they are fitted to 512x320
    with pytest.raises(input_error) as raised:
        _chain(pack, tiny, vae, keyframes)
    message = str(raised.value)
    assert "16 frames at 512x320, 601 frames out" in message and "more than the 2 GiB" in message, message
    assert "DYNAMICRAFTER_MAX_RUN_GB" in message
    assert not vae.encoded, "refused before any keyframe was encoded"
    # The same 601 frames as one Long Video are refused alike (one estimate for both).
    long_video = pack["long_video"].DynamiCrafterLongVideo
    assert long_video.validate_inputs(width=512, height=320, clip_frames=16, total_frames=601) is not True


def test_fractional_caps_are_shown_as_they_are(pack, tiny, input_error, monkeypatch):
    monkeypatch.setenv("DYNAMICRAFTER_MAX_RUN_GB", "0.25")
    with pytest.raises(input_error, match=r"more than the 0\.25 GiB this server allows"):
        _chain(pack, tiny, RecordingVAE(tiny["vae"]), torch.rand(3, 8, 8, 3))


def test_keyframes_are_bounded_by_the_admins_setting(pack, tiny, input_error, monkeypatch):
    monkeypatch.setenv("DYNAMICRAFTER_MAX_RUN_GB", "100000")
    vae = RecordingVAE(tiny["vae"])
    with pytest.raises(input_error, match="holds 65 pictures; a chain takes at most 64"):
        _chain(pack, tiny, vae, torch.rand(65, 8, 8, 3), width=64, height=64, frames=2)
    monkeypatch.setenv("DYNAMICRAFTER_MAX_KEYFRAMES", "3")
    with pytest.raises(input_error, match="DYNAMICRAFTER_MAX_KEYFRAMES"):
        _chain(pack, tiny, vae, torch.rand(4, 8, 8, 3), width=64, height=64, frames=2)
    assert not vae.encoded
