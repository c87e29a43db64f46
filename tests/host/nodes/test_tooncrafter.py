"""ToonCrafter in the real host: a tiny checkpoint in the real key layout through the loader node, and the
dual-reference decode node on 16 frames."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.tooncrafter.config import ToonCrafterVAEConfig
from dynamicrafter.tooncrafter.decode import decode_video
from dynamicrafter.tooncrafter.vae import ToonCrafterVAE
from support.host_checkpoints import host_state_dict, write_host_checkpoint
from support.reference_data import manifest_path
from support.tiny_checkpoints import shrunk_part

TINY_VAE = ToonCrafterVAEConfig(channels=32, channel_mult=(1, 1, 2, 2), num_res_blocks=1)
FRAMES, SIZE = 16, 32
TOON_FILE, TOON_CKPT = "tooncrafter_512_interp_tiny.safetensors", "tooncrafter_512_interp_tiny.ckpt"
PLAIN_FILE = "dynamicrafter_512_interp_tiny_fp16_pruned.safetensors"
ORANGE, BLUE = 0xD07820, 0x2050E0


def tiny_tooncrafter_vae_state_dict(seed: int = 5) -> dict[str, torch.Tensor]:
    """Random weights for every key of a narrow dual-reference VAE (norms near identity)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in ToonCrafterVAE(TINY_VAE).state_dict().items():
        noise = torch.randn(value.shape, generator=generator)
        is_norm = ".norm" in key or "_layers.0." in key
        out[key] = (1 + 0.1 * noise if key.endswith("weight") else 0.1 * noise) if is_norm else noise * 0.05
    return out


@pytest.fixture(scope="module")
def tooncrafter(comfy_host, tmp_path_factory):
    """The ToonCrafter nodes registered, and a folder with a tiny ToonCrafter file and a tiny DynamiCrafter one."""
    manifest_file = manifest_path("512_interp")
    manifest = json.loads(manifest_file.read_text())
    sd = {
        k: v
        for k, v in host_state_dict("512_interp", manifest_file, with_encoders=False).items()
        if not k.startswith(PART_PREFIXES["vae"])
    }
    sd.update({PART_PREFIXES["vae"] + k: v for k, v in tiny_tooncrafter_vae_state_dict().items()})
    for part in ("text_encoder", "clip_vision"):  # real key names, narrow shapes: the loader only splits them
        sd.update(shrunk_part(manifest, PART_PREFIXES[part]))
    folder = tmp_path_factory.mktemp("tooncrafter") / "checkpoints"
    folder.mkdir()
    torch.save({"state_dict": sd}, folder / TOON_CKPT)
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(folder / TOON_FILE))
    write_host_checkpoint(folder / PLAIN_FILE, "512_interp", manifest_file, "pruned")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder), is_default=True)
    module = comfy_host.import_pack_module("nodes.tooncrafter")
    comfy_host.register(module.NODES)
    return module


@pytest.fixture
def stub_encoders(tooncrafter, monkeypatch):
    """Full-size CLIP towers are tested with the DynamiCrafter loader; here their builders only record their input."""
    received: dict[str, dict] = {}

    def record(name: str):
        def build(sd: dict) -> str:
            received[name] = sd
            return f"{name} stand-in"

        return build

    monkeypatch.setattr(tooncrafter, "text_encoder_from_state_dict", record("text_encoder"))
    monkeypatch.setattr(tooncrafter, "clip_vision_from_state_dict", record("clip_vision"))
    return received


def decode_prompt(ckpt_name: str) -> dict:
    return {
        "1": {
            "class_type": "DynamiCrafterToonCrafterLoader",
            "inputs": {"ckpt_name": ckpt_name, "weight_dtype": "default"},
        },
        "2": {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1, "color": ORANGE}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1, "color": BLUE}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "5": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["4", 0], "amount": FRAMES}},
        "6": {
            "class_type": "DynamiCrafterToonCrafterDecode",
            "inputs": {
                "samples": ["5", 0],
                "tooncrafter_vae": ["1", 4],
                "start_image": ["2", 0],
                "end_image": ["3", 0],
                "frames": FRAMES,
                "fit": "crop",
                "middle_pass": True,
            },
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
    }


def test_loader_and_decode_nodes(comfy_host, tooncrafter, stub_encoders):
    run = comfy_host.run_prompt(decode_prompt(TOON_FILE), outputs=["6", "7"])
    model, clip, vae, clip_vision, toon_vae = run.outputs["1"]
    assert model[0].model.variant.name == "tooncrafter" and model[0].model.variant.default_fs == 10
    assert model[0].model.variant.interpolation
    assert (clip[0], clip_vision[0]) == ("text_encoder stand-in", "clip_vision stand-in")
    assert "model.token_embedding.weight" in stub_encoders["text_encoder"]
    assert any(k.startswith("model.visual.") for k in stub_encoders["clip_vision"])
    assert run.output("4")["samples"].shape == (1, 4, SIZE // 8, SIZE // 8)  # the host VAE encodes,
    assert run.output("7").shape == (1, SIZE, SIZE, 3)  # and stock VAE Decode gives a per-frame preview
    assert dataclasses.asdict(toon_vae[0].vae.config) == dataclasses.asdict(TINY_VAE)  # the pack's own class
    frames = run.output("6")
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1


def test_decode_node_is_the_reference_decode(comfy_host, tooncrafter, stub_encoders):
    """The node equals the pure-torch procedure, and both keyframes reach their ends of the video."""
    loader = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterToonCrafterLoader"]
    toon_vae = loader.execute(TOON_CKPT, "default").result[4]
    latents = torch.randn((FRAMES, 4, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(0))
    start, end, other = (torch.full((1, SIZE, SIZE, 3), v) for v in (0.8, 0.2, 0.5))
    frames = tooncrafter.decode_latents(toon_vae, latents, start, end, FRAMES)

    vae = ToonCrafterVAE(TINY_VAE)
    vae.load_state_dict(tiny_tooncrafter_vae_state_dict())
    with torch.no_grad():
        context = vae.reference_context(start.movedim(-1, 1) * 2 - 1, end.movedim(-1, 1) * 2 - 1)
        reference = decode_video(lambda z: vae.decode(z, context), latents)
    torch.testing.assert_close(frames, ((reference + 1) / 2).clamp(0, 1).movedim(1, -1), rtol=1e-4, atol=1e-4)

    changed = (tooncrafter.decode_latents(toon_vae, latents, start, other, FRAMES) - frames).abs().amax(dim=(1, 2, 3))
    assert changed[-1] > 3 * changed[0] > 0  # the end picture steers the last frames most


def test_batch_of_two_videos_with_one_keyframe_pair(comfy_host, tooncrafter, stub_encoders):
    loader = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterToonCrafterLoader"]
    toon_vae = loader.execute(TOON_FILE, "default").result[4]
    one = torch.randn((8, 4, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(1))
    start, end = torch.rand((1, 50, 40, 3)), torch.rand((1, 20, 20, 3))  # other sizes: fitted like conditioning
    both = tooncrafter.decode_latents(toon_vae, torch.cat([one, one]), start, end, 8, "pad")
    assert both.shape == (16, SIZE, SIZE, 3)
    torch.testing.assert_close(both[:8], both[8:])


def test_wrong_inputs_are_clear_errors(comfy_host, tooncrafter, stub_encoders):
    loader = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterToonCrafterLoader"]
    toon_vae = loader.execute(TOON_FILE, "default").result[4]
    latents, image = torch.zeros((FRAMES, 4, SIZE // 8, SIZE // 8)), torch.zeros((1, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="not a multiple of frames=12"):
        tooncrafter.decode_latents(toon_vae, latents, image, image, 12)
    with pytest.raises(ValueError, match="start_image holds 3 pictures for 1 videos"):
        tooncrafter.decode_latents(toon_vae, latents, image.repeat(3, 1, 1, 1), image, FRAMES)
    with pytest.raises(tooncrafter.CheckpointError, match=f"{PLAIN_FILE}: its VAE is DynamiCrafter's plain SD VAE"):
        loader.execute(PLAIN_FILE, "default")


def test_interpolation_graph_end_to_end(comfy_host, tooncrafter, tmp_path_factory):
    """Loader -> CLIP text -> interpolation conditioning -> sampler -> ToonCrafter decode, with real
    (random, full-size) CLIP towers. The slowest test here (the towers are 1 B parameters on CPU)."""
    manifest_file = manifest_path("512_interp")
    sd = {
        k: v for k, v in host_state_dict("512_interp", manifest_file).items() if not k.startswith(PART_PREFIXES["vae"])
    }
    sd.update({PART_PREFIXES["vae"] + k: v for k, v in tiny_tooncrafter_vae_state_dict().items()})
    folder = tmp_path_factory.mktemp("tooncrafter_full")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "tooncrafter_e2e.safetensors"))
    del sd
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    prompt = decode_prompt("tooncrafter_e2e.safetensors")
    size = 64  # the conditioning node's grid
    for node in ("2", "3"):
        prompt[node]["inputs"].update(width=size, height=size)
    prompt.update(
        {
            "7": {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": "an anime girl turning her head", "clip": ["1", 1]},
            },
            "8": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
            "9": {
                "class_type": "DynamiCrafterInterpolation",
                "inputs": {
                    "positive": ["7", 0],
                    "negative": ["8", 0],
                    "vae": ["1", 2],
                    "clip_vision": ["1", 3],
                    "start_image": ["2", 0],
                    "end_image": ["3", 0],
                    "mode": "interpolate",
                    "width": size,
                    "height": size,
                    "frames": FRAMES,
                    "fs": 0,
                    "batch_size": 1,
                    "fit": "crop",
                },
            },
            "10": {
                "class_type": "DynamiCrafterSampler",
                "inputs": {
                    "model": ["1", 0],
                    "positive": ["9", 0],
                    "negative": ["9", 1],
                    "latent": ["9", 2],
                    "seed": 1,
                    "steps": 1,
                    "cfg": 7.5,
                    "eta": 1.0,
                    "guidance_rescale": -1.0,
                    "spacing": "auto",
                    "dynamic_rescale": "auto",
                },
            },
        }
    )
    prompt["6"]["inputs"]["samples"] = ["10", 0]
    del prompt["4"], prompt["5"]
    run = comfy_host.run_prompt(prompt, outputs=["6"])
    frames = run.output("6")
    assert frames.shape == (FRAMES, size, size, 3) and torch.isfinite(frames).all()
