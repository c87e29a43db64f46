"""ToonCrafter sketch guidance in the keyframe chain, in the real host, on the sketch-parity ToonCrafter network and
sketch encoder (tests/data/parity_sketch): a sketch for a frame of the chained video guides the segment that shows
it exactly as the single-clip path does (Interpolate node, Sketch Guidance node with the frame's number within that
segment, DynamiCrafter Sampler with the segment's seed); the other segment is untouched; strength 0 is no sketch;
sketches that do not fit are refused clearly, at queue time where the host lets the node know."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from dynamicrafter.chain import segment_seed
from support import sketch_parity as sp
from support.long_video_parts import TINY_VAE, FakeClipVision, pictures
from support.tiny_host import relative_error

SIZE, FRAMES, FS = 64, 16, 10
SEED, STEPS, CFG, ETA, RESCALE = 11, 1, 7.5, 1.0, -1.0
ENCODER_FILE = "sketch_encoder_chain.safetensors"
MODULES = ("long_video", "chain_sketches", "conditioning", "sketch")


@pytest.fixture(scope="module")
def parts(comfy_host, tmp_path_factory):
    """The parity ToonCrafter model, its sketch encoder through the stock loader, a tiny VAE, prompts, keyframes."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    folder = tmp_path_factory.mktemp("chain-sketch-encoder")
    save_file(sp.random_weights("controlnet"), str(folder / ENCODER_FILE))
    comfy_host.folder_paths.add_model_folder_path("controlnet", str(folder))
    g = torch.Generator().manual_seed(4)
    vae = AutoencoderKL(ddconfig=TINY_VAE, embed_dim=4).state_dict()
    return SimpleNamespace(
        nodes={n: comfy_host.import_pack_module(f"nodes.{n}") for n in MODULES},
        sampler=comfy_host.import_pack_module("nodes.sampler").DynamiCrafterSampler,
        model=comfy_host.import_pack_module("nodes.adapter.patcher").model_from_checkpoint(sp.checkpoint(), "fp32"),
        encoder=comfy_host.nodes.ControlNetLoader().load_controlnet(ENCODER_FILE)[0],
        vae=comfy.sd.VAE(
            sd={k: torch.randn(v.shape, generator=g) * 0.02 for k, v in vae.items()},
            config={"params": {"ddconfig": TINY_VAE, "embed_dim": 4}},
        ),
        prompts=tuple([[torch.randn(1, 77, 1024, generator=g), {}]] for _ in range(2)),
        keyframes=pictures(3),
        sketches=sp.sketch_images(torch.rand(1, 1, 3, 32, 32, generator=g)),
    )


@pytest.fixture(scope="module")
def chain(parts):
    """Runs the chain (CLIP vision stood in for); returns the video and each segment's sampled latents."""
    fake = FakeClipVision()
    latents: list[torch.Tensor] = []
    sampler = parts.nodes["long_video"].SegmentSampler
    original = sampler.sample

    def sample(self, index, positive, negative, latent):
        latents.append(original(self, index, positive, negative, latent))
        return latents[-1]

    def run(**sketch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        latents.clear()
        node = parts.nodes["long_video"].DynamiCrafterKeyframeChain
        args = (parts.model, *parts.prompts, parts.vae, object(), parts.keyframes, SIZE, SIZE, FRAMES, FS)
        with torch.no_grad():
            video = node.execute(*args, SEED, STEPS, CFG, ETA, RESCALE, "crop", **sketch).result[0]
        return video, list(latents)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parts.nodes["conditioning"], "image_tokens", fake.tokens)
        patch.setattr(parts.nodes["conditioning"], "unconditional_tokens", lambda clip_vision: fake.uncond)
        patch.setattr(sampler, "sample", sample)
        yield run


@pytest.fixture(scope="module")
def plain(chain) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The chain without sketches."""
    return chain()


def second_segment_alone(parts, sketches: torch.Tensor, frames: str) -> torch.Tensor:
    """Keyframe 1 -> 2 through the single-clip nodes, sketches on ``frames`` of that clip: the sampled latents."""
    interpolate = parts.nodes["conditioning"].DynamiCrafterInterpolation
    guidance = parts.nodes["sketch"].DynamiCrafterSketchGuidance
    keyframes = parts.keyframes
    with torch.no_grad():
        pos, neg, latent = interpolate.execute(
            *parts.prompts,
            parts.vae,
            object(),
            keyframes[1:2],
            "interpolate",
            SIZE,
            SIZE,
            FRAMES,
            FS,
            1,
            "crop",
            end_image=keyframes[2:3],
        ).result
        pos, neg = guidance.execute(pos, neg, parts.encoder, sketches, frames, 0.6, 0.0, 1.0, True).result
        settings = (segment_seed(SEED, 1), STEPS, CFG, ETA, RESCALE, "auto", "auto")
        return parts.sampler.execute(parts.model, pos, neg, latent, *settings).result[0]["samples"]


def test_a_sketched_frame_guides_its_segment_as_the_single_clip_nodes_do(parts, chain, plain):
    plain_video, plain_latents = plain
    sketched = {"sketch_encoder": parts.encoder, "sketches": parts.sketches[:2], "sketch_frames": "17, 20"}
    video, guided = chain(**sketched)
    assert torch.equal(guided[0], plain_latents[0]) and torch.equal(video[:FRAMES], plain_video[:FRAMES])
    # chained frames 17 and 20 are frames 2 and 5 of the second segment (keyframe 1 is chained frame 15)
    alone = second_segment_alone(parts, parts.sketches[:2], "2, 5")
    assert torch.equal(guided[1], alone)
    assert relative_error(guided[1], plain_latents[1]) > 1e-3  # the sketches do steer
    assert relative_error(guided[1], second_segment_alone(parts, parts.sketches[:2], "1, 4")) > 1e-3


def test_strength_zero_is_no_sketch(parts, chain, plain):
    off, _ = chain(sketch_encoder=parts.encoder, sketches=parts.sketches[:1], sketch_frames="20", sketch_strength=0.0)
    assert torch.equal(off, plain[0])


def test_a_keyframe_sketch_guides_both_segments_that_show_it(comfy_host, parts):
    """Chained frame 15 is keyframe 1: the last frame of segment 0 and the first of segment 1."""
    chain_sketches, sketch = parts.nodes["chain_sketches"], parts.nodes["sketch"]
    settings = chain_sketches.SketchSettings(0.6, 0.0, 1.0, True)
    guide = chain_sketches.plan_chain_sketches(parts.encoder, parts.sketches, "3, 15, 29", 3, FRAMES, settings)
    assert guide.placed == [[(3, 0), (15, 1)], [(0, 1), (14, 2)]]
    conds = sp.conditioning(comfy_host.import_pack_module("nodes.adapter.family"), sp.inputs())  # a 32x32 video
    for segment, frames, picks in ((0, (3, 15), [0, 1]), (1, (0, 14), [1, 2])):
        positive, negative = guide.guide(segment, *conds)
        for side in (positive, negative):
            control = side[0][1]["control"]
            assert control.sketched.tolist() == [f in frames for f in range(FRAMES)]
            assert torch.equal(control.cond_hint_original, sketch.sketch_hint(parts.sketches[picks], 32, 32, True))
            assert control.strength == 0.6


@pytest.mark.parametrize(
    "count, frames, message",
    [
        (3, "17, 20", "'sketch_frames' lists 2 frames \\(17, 20\\) but 3 sketches came"),
        (1, "31", "frame 31 is outside the video's frames 0-30 .* \\(3 keyframes with 16-frame segments make 31"),
        (2, "", "2 sketches for a 31-frame video: .* in 'sketch_frames'"),
        (1, "-1", None),
    ],
)
def test_sketches_that_do_not_fit_the_chain_are_refused_before_sampling(parts, count, frames, message):
    plan = parts.nodes["chain_sketches"].plan_chain_sketches
    settings = parts.nodes["chain_sketches"].SketchSettings(0.6, 0.0, 1.0, True)
    if message is None:  # -1: the last frame of the chain, the end of the last segment
        assert plan(parts.encoder, parts.sketches[:count], frames, 3, FRAMES, settings).placed == [[], [(15, 0)]]
        return
    with pytest.raises(ValueError, match=message):
        plan(parts.encoder, parts.sketches[:count], frames, 3, FRAMES, settings)


def test_a_wrong_encoder_is_refused_when_the_chain_runs(parts, chain):
    with pytest.raises(ValueError, match="not an SD-layout ControlNet.*sketch_encoder.ckpt"):
        chain(sketch_encoder=object(), sketches=parts.sketches[:1], sketch_frames="20")


def _queued(comfy_host, inputs: dict) -> str:
    """The errors the host reports when the chain node is queued with ``inputs`` (links to an 'Empty Image' and
    the sketch encoder's 'Load ControlNet Model')."""
    prompt = {
        "1": {"class_type": "DynamiCrafterKeyframeChain", "inputs": inputs},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "3": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": ENCODER_FILE}},
    }
    ok, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
    assert not ok
    return json.dumps(errors)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"sketches": ["2", 0]}, "'sketches' is connected but 'sketch_encoder' is not"),
        ({"sketch_frames": "20"}, "'sketch_frames' lists frames but no 'sketches' are connected"),
        ({"sketches": ["2", 0], "sketch_frames": "20, 17"}, "increasing order"),
        ({"sketches": ["2", 0], "sketch_frames": "twenty"}, "sketch_frames: 'twenty' is not a frame number"),
        ({"sketch_start_percent": 0.9, "sketch_end_percent": 0.1}, "sketch_start_percent (0.9) is after"),
        ({"sketch_strength": float("nan")}, "sketch_strength is nan"),
    ],
)
def test_bad_sketch_inputs_are_refused_at_queue_time(comfy_host, parts, inputs, message):
    if "sketch_frames" in inputs and "sketches" in inputs:  # only the list is wrong here
        inputs = {**inputs, "sketch_encoder": ["3", 0]}
    assert message in _queued(comfy_host, inputs)
