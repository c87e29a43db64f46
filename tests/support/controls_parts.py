"""The pieces the sampler-control host tests share (``tests/host/nodes/controls``; fixtures in its ``conftest.py``):
the original's control goldens (``tests/data/parity_controls``), the conditioning built from them, the
pack's sampler run on them, and the comparison with the original."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from dynamicrafter.frames import fold_frames, unfold_frames
from support.parity_data import FixtureSet, relative_error, relative_l2
from support.reference_data import PARITY_SMALL_512

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "parity_controls"
CONFIG = json.loads((GOLDENS / "config.json").read_text())
SCALE, TOL, FRAMES = 0.18215, 1e-4, 16
SEED = CONFIG["seed"]
FS = CONFIG["sampling"]["fs"]


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / f"{name}.safetensors"))


def conds(pack, g: dict[str, torch.Tensor]):
    """Positive / negative exactly as the image-to-video node builds them, from the golden stand-ins."""
    m = pack["family"]
    shared = {
        m.COND_CONCAT: g["latent_first_raw"].repeat(FRAMES, 1, 1, 1),
        m.COND_FRAMES: FRAMES,
        m.COND_FS: FS,
        m.COND_TASK: "i2v",
    }
    return (
        [[g["text_emb"], {**shared, m.COND_IMAGE_TOKENS: g["image_embeds"]}]],
        [[g["uc_text_emb"], {**shared, m.COND_IMAGE_TOKENS: g["uc_image_embeds"]}]],
    )


def host_latent(video: torch.Tensor) -> torch.Tensor:
    """[1, 4, T, h, w] model scale -> the host's frames-as-batch VAE-scale latent."""
    return fold_frames(video / SCALE).contiguous()


def as_video(latent: torch.Tensor) -> torch.Tensor:
    return unfold_frames(latent * SCALE, FRAMES)


def sample(pack, model, g, latent: dict, eta: float, **controls) -> torch.Tensor:
    positive, negative = conds(pack, g)
    with torch.no_grad():
        return (
            pack["sampler"]
            .DynamiCrafterSampler.execute(
                model,
                positive,
                negative,
                latent,
                SEED,
                CONFIG["sampling"]["steps"],
                CONFIG["sampling"]["cfg"],
                eta,
                CONFIG["sampling"]["guidance_rescale"],
                "auto",
                "auto",
                **controls,
            )
            .result[0]["samples"]
        )


def call_node(node_class, **inputs):
    """A host node's outputs, V1 (FUNCTION) or V3 (execute) alike."""
    if hasattr(node_class, "FUNCTION"):
        return getattr(node_class(), node_class.FUNCTION)(**inputs)
    return node_class.execute(**inputs).result


def sample_custom_advanced(pack, noise, guider, sampler, sigmas, latent: dict) -> torch.Tensor:
    """The stock SamplerCustomAdvanced's output latent from the given pieces (``pack["custom"]`` is its module)."""
    with torch.no_grad():
        return call_node(
            pack["custom"].SamplerCustomAdvanced,
            noise=noise,
            guider=guider,
            sampler=sampler,
            sigmas=sigmas,
            latent_image=latent,
        )[0]["samples"]


def empty() -> dict:
    return {"samples": torch.zeros(FRAMES, 4, 8, 16)}


def assert_matches(ours: torch.Tensor, expected: torch.Tensor) -> None:
    l2, worst = relative_l2(ours, expected), relative_error(ours, expected)
    print(f"relative L2 {l2:.2e}, max |ours - original| / std {worst:.2e}")
    assert l2 < TOL and worst < TOL


def load_fixture(pack, variant: str):
    """The small_512 parity network (tests/data/parity) through the pack's loader code, as ``variant``."""
    return pack["patcher"].model_from_checkpoint(FixtureSet(PARITY_SMALL_512).checkpoint(variant), "fp32")
