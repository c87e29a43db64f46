"""Produce the training-loss goldens with the ORIGINAL code (Doubiiu/DynamiCrafter @ c453369).

Runs only in a throwaway environment that can import the original repository (see README.md here); it is
never imported by the tests:

    python generate_with_original.py --original /path/to/DynamiCrafter

For each case (256, 512, 512_interp) the original ``LatentVisualDiffusion`` is built from the parity
fixture's configuration (``tests/data/parity/small_256`` or ``small_512``) with the training settings of
that variant (``uncond_prob``, ``rand_cond_frame``, ``interp_mode``), loaded strictly, and one call of its
``shared_step(batch, random_uncond=True)`` gives the loss; ``loss.backward()`` gives the gradients. The VAE
and both CLIP towers are small deterministic stand-ins without parameters (as in ``../parity_interp``); their
outputs are saved, and the test feeds them to the pack. The original draws ``t`` (``torch.randint``), the
noise (``torch.randn_like``) and the conditioning frame (``random.randint``) itself, from fixed seeds; they
are recorded. The dropout draw (``torch.rand``) is replayed from fixed values, one per video, chosen so
that the four videos of each case take the four branches (keep, text only, both, image only).
The network runs in eval mode: the UNet's dropout layers (p = 0.1 in the training yaml) are random and off.

Writes ``<case>.safetensors`` and ``config.json`` next to this file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import tempfile
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

log = logging.getLogger("generate_with_original")

HERE = Path(__file__).resolve().parent
PARITY = HERE.parent / "parity"
REPO = "Doubiiu/DynamiCrafter"
COMMIT = "c453369367122d7fbb0aa38f124e76dc8fe2a91c"
SOURCES = ["lvdm/models/ddpm3d.py", "lvdm/models/utils_diffusion.py", "lvdm/modules/networks/openaimodel3d.py",
           "lvdm/modules/attention.py", "lvdm/modules/encoders/resampler.py", "lvdm/common.py", "utils/utils.py",
           "lvdm/data/webvid.py", "configs/training_512_v1.0/config.yaml",
           "configs/training_512_v1.0/config_interp.yaml"]

SEED = 5427
B, FRAMES, LATENT_H, LATENT_W = 4, 16, 8, 16
HEIGHT, WIDTH = LATENT_H * 8, LATENT_W * 8
CLIP_TOKENS, CLIP_WIDTH, TEXT_TOKENS, TEXT_WIDTH = 257, 40, 77, 48
CAPTIONS = ["a kite in the wind", "waves on a beach", "a dog running", "smoke rising"]
FPS = [24, 30, 8, 12]
STRIDES = [3, 1, 6, 2]
CASES = {
    # fixture, training overrides (the variant's training yaml; 256 has none: class defaults), dropout draws
    "256": ("small_256", {"uncond_prob": 0.2, "rand_cond_frame": False}, [0.9, 0.1, 0.3, 0.5]),
    "512": ("small_512", {"uncond_prob": 0.05, "rand_cond_frame": True}, [0.9, 0.02, 0.07, 0.12]),
    "512_interp": ("small_512", {"uncond_prob": 0.05, "rand_cond_frame": False, "interp_mode": True},
                   [0.9, 0.02, 0.07, 0.12]),
}
GRAD_PATTERN = re.compile(
    r"^(model\.diffusion_model\.(input_blocks\.1\.|output_blocks\.11\.|init_attn\.|"
    r"input_blocks\.0\.0\.weight|out\.2\.weight|fps_embedding\.)|image_proj_model\.)"
)
"""Parameters whose gradient is stored: one input and one output block (ResBlock + temporal conv, spatial and
temporal transformers with the image cross-attention), ``init_attn``, the in/out convs, the fs embedding and the
whole Resampler."""


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed((SEED * 1000003 + zlib.crc32(name.encode())) % 2 ** 62)


class StandInVAE(torch.nn.Module):
    """8x8 patches -> 4 channels, a fixed linear map (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = 10 * torch.randn(4, 3, 8, 8, generator=_generator("vae/weight")) / 192 ** 0.5
        self.bias = 0.05 * torch.randn(4, generator=_generator("vae/bias"))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=8)


class StandInText(torch.nn.Module):
    """Prompt -> fixed random [77, 48] embedding (one generator per prompt)."""

    def forward(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([torch.randn(TEXT_TOKENS, TEXT_WIDTH, generator=_generator(f"text/{p}")) for p in prompts])


class StandInCLIPVision(torch.nn.Module):
    """[B, 3, H, W] -> [B, 257, 40]: 4x8 average pool and a fixed affine map (the bias: gray is not zero)."""

    def __init__(self) -> None:
        super().__init__()
        features = 3 * 4 * 8
        self.weight = torch.randn(features, CLIP_TOKENS * CLIP_WIDTH, generator=_generator("clip/weight")) / features ** 0.5
        self.bias = torch.randn(CLIP_TOKENS * CLIP_WIDTH, generator=_generator("clip/bias"))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(image, (4, 8)).flatten(1)
        return (pooled @ self.weight + self.bias).view(-1, CLIP_TOKENS, CLIP_WIDTH)


def _videos() -> torch.Tensor:
    """[B, 3, T, H, W] in [-1, 1]: smooth pictures that change from frame to frame."""
    coarse = torch.rand(B, 3, FRAMES, 4, 8, generator=_generator("video")) * 2 - 1
    return F.interpolate(coarse, size=(FRAMES, HEIGHT, WIDTH), mode="trilinear", align_corners=False)


def _blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _install_torchvision_stand_in() -> None:
    """An import-time stand-in for torchvision (none of its names is called on this path)."""
    import pytorch_lightning  # noqa: F401  (first: torchmetrics probes for torchvision at import)

    folder = Path(tempfile.mkdtemp(prefix="tv_stub_")) / "torchvision"
    (folder / "transforms").mkdir(parents=True)
    (folder / "ops").mkdir()
    (folder / "__init__.py").write_text("from . import utils, transforms, ops\n")
    (folder / "utils.py").write_text("def make_grid(*a, **k):\n    raise NotImplementedError\n")
    (folder / "transforms" / "__init__.py").write_text("")
    (folder / "ops" / "__init__.py").write_text("from . import misc\n")
    (folder / "ops" / "misc.py").write_text("")
    sys.path.insert(0, str(folder.parent))


def _build_model(fixture: Path, overrides: dict):
    from omegaconf import OmegaConf
    from utils.utils import instantiate_from_config

    fixture_config = json.loads((fixture / "config.json").read_text())
    config = fixture_config["LatentVisualDiffusion_config_used"]
    config["params"].update(overrides)
    model = instantiate_from_config(OmegaConf.create(config))
    sd = {**load_file(str(fixture / "weights.safetensors")), **load_file(str(fixture / "buffers.safetensors"))}
    for module_name, file_name in fixture_config.get("checkpoint_key_renames_module_to_file", {}).items():
        # the 256 file's fs MLP name; the original's load_model_checkpoint renames it the same way
        sd = {(module_name + k[len(file_name):] if k.startswith(file_name) else k): v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    model.first_stage_model, model.cond_stage_model, model.embedder = StandInVAE(), StandInText(), StandInCLIPVision()
    return model.eval(), config


def _run_case(original_case: str) -> tuple[dict[str, torch.Tensor], dict]:
    fixture_name, overrides, dropout = CASES[original_case]
    model, config = _build_model(PARITY / fixture_name, overrides)
    videos = _videos()
    batch = {"video": videos.clone(), "caption": list(CAPTIONS), "fps": torch.tensor(FPS),
             "frame_stride": torch.tensor(STRIDES)}
    recorded: dict[str, object] = {}
    real = {"rand": torch.rand, "randint": torch.randint, "randn_like": torch.randn_like, "py_randint": random.randint}

    def replay_rand(*args, **kwargs):
        out = real["rand"](*args, **kwargs)  # the original's draw is still consumed
        recorded["dropout"] = torch.tensor(dropout, dtype=out.dtype)
        return recorded["dropout"].clone().to(out.device)

    def record(name):
        def wrapped(*args, **kwargs):
            out = real[name](*args, **kwargs)
            recorded[name] = out.clone() if isinstance(out, torch.Tensor) else out
            return out
        return wrapped

    apply_model = type(model).apply_model

    def recording_apply(self, x_noisy, t, cond, **kwargs):
        recorded["x_noisy"], recorded["c_concat"] = x_noisy.detach().clone(), cond["c_concat"][0].detach().clone()
        recorded["context"], recorded["fs"] = cond["c_crossattn"][0].detach().clone(), kwargs["fs"].clone()
        out = apply_model(self, x_noisy, t, cond, **kwargs)
        recorded["model_output"] = out.detach().clone()
        return out

    torch.manual_seed(SEED)
    random.seed(SEED)
    torch.rand, torch.randint, torch.randn_like = replay_rand, record("randint"), record("randn_like")
    random.randint = record("py_randint")
    type(model).apply_model = recording_apply
    try:
        model.zero_grad(set_to_none=True)
        loss, _ = model.shared_step(batch, random_uncond=True)
        loss.backward()
    finally:
        torch.rand, torch.randint, torch.randn_like = real["rand"], real["randint"], real["randn_like"]
        random.randint = real["py_randint"]
        type(model).apply_model = apply_model

    cond_frame = recorded.get("py_randint", 0)
    if overrides.get("rand_cond_frame") and cond_frame == 0:
        raise RuntimeError("pick another SEED: the random conditioning frame came out as frame 0")
    with torch.no_grad():
        stand_in_vae, text, clip = model.first_stage_model, model.cond_stage_model, model.embedder
        frames = videos.permute(0, 2, 1, 3, 4).reshape(B * FRAMES, 3, HEIGHT, WIDTH)
        latents = 0.18215 * stand_in_vae.encode(frames).view(B, FRAMES, 4, LATENT_H, LATENT_W).permute(0, 2, 1, 3, 4)
        clip_frames = clip(frames).view(B, FRAMES, CLIP_TOKENS, CLIP_WIDTH)
        if not overrides.get("rand_cond_frame"):
            clip_frames = clip_frames[:, :1]  # only frame 0 conditions
        out = {
            "loss": loss.detach().reshape(1), "latents": latents, "text": text(CAPTIONS), "empty_text": text([""]),
            "clip_frames": clip_frames, "clip_blank": clip(torch.zeros(1, 3, HEIGHT, WIDTH)),
            "fs": recorded["fs"].float(), "timesteps": recorded["randint"].float(), "noise": recorded["randn_like"],
            "dropout": recorded["dropout"], "cond_frame": torch.tensor([float(cond_frame)]),
            "x_noisy": recorded["x_noisy"], "c_concat": recorded["c_concat"], "context": recorded["context"],
            "model_output": recorded["model_output"],
        }
    if not torch.allclose(out["latents"], _original_latents(model, videos), rtol=0, atol=0):
        raise RuntimeError("the saved latents are not the original's encode_first_stage")
    for name, param in model.named_parameters():
        if GRAD_PATTERN.match(name) and param.grad is not None:
            out[f"grad/{name}"] = param.grad.detach().clone()
    info = {"fixture": f"tests/data/parity/{fixture_name}", "overrides": overrides, "dropout_replayed": dropout,
            "recorded_timesteps": recorded["randint"].tolist(), "cond_frame": cond_frame, "loss": float(loss),
            "parameterization": config["params"].get("parameterization", "eps"),
            "fps_condition_type": config["params"].get("fps_condition_type", "fs")}
    return {k: v.contiguous().float() for k, v in out.items()}, info


def _original_latents(model, videos: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_first_stage(videos)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help=f"the {REPO} repository at {COMMIT}")
    args = parser.parse_args()
    original = args.original.resolve()
    torch.set_num_threads(1)
    _install_torchvision_stand_in()
    sys.path.insert(0, str(original))
    cases, shapes = {}, {}
    for case in CASES:
        tensors, info = _run_case(case)
        again, _ = _run_case(case)
        if not all(torch.equal(tensors[k], again[k]) for k in tensors):
            raise RuntimeError(f"{case}: the original is not deterministic on this machine")
        save_file(tensors, str(HERE / f"{case}.safetensors"))
        cases[case], shapes[case] = info, {k: list(v.shape) for k, v in tensors.items()}
        log.info("%s: loss %.6f, %d gradients", case, info["loss"], sum(k.startswith("grad/") for k in tensors))

    import einops
    import numpy
    import omegaconf
    import pytorch_lightning
    import safetensors

    config = {
        "source": {"repo": REPO, "commit": COMMIT, "git_blob_sha1": {s: _blob_sha1(original / s) for s in SOURCES}},
        "command": "python tests/data/parity_training/generate_with_original.py --original <DynamiCrafter@c453369>",
        "entry_point": "LatentVisualDiffusion.shared_step(batch, random_uncond=True) then loss.backward()",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
                     "einops": einops.__version__, "omegaconf": omegaconf.__version__,
                     "safetensors": safetensors.__version__, "pytorch_lightning": pytorch_lightning.__version__},
        "stand_ins": "torchvision (import-time names only, nothing called); VAE, text and CLIP vision towers: "
                     "parameter-free deterministic maps defined in this script",
        "threads": 1, "seed": SEED, "batch": B, "frames": FRAMES, "latent_hw": [LATENT_H, LATENT_W],
        "captions": CAPTIONS, "fps": FPS, "frame_strides": STRIDES, "mode": "eval (UNet dropout off)",
        "grad_pattern": GRAD_PATTERN.pattern, "cases": cases, "shapes": shapes,
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main()
