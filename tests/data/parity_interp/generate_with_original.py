"""Produce the interpolation / loop goldens with the ORIGINAL code (Doubiiu/DynamiCrafter @ c453369).

Runs only in a throwaway environment that can import the original repository (see README.md here); it is
never imported by the tests:

    python generate_with_original.py --original /path/to/DynamiCrafter --fixture tests/data/parity/small_512 \
        [--stubs /path/to/torchvision-stand-in]

The network is the ``small_512`` parity fixture (``tests/data/parity/small_512``: weights, schedule
buffers, configuration), built as the original ``LatentVisualDiffusion`` and loaded strictly. The
conditioning and the run go through the original ``scripts/evaluation/inference.py::image_guided_synthesis``
with ``--interp`` / ``--loop`` semantics (``videos`` laid out as ``load_data_prompts`` lays them out) and
the original ``DDIMSampler``. The VAE and both CLIP towers are small deterministic stand-ins (defined here,
no parameters): the test injects their outputs, which are saved. ``x_T`` and the eta=1 step noise are the
draws the pack's sampler makes for the same seed (ComfyUI ``prepare_noise``, then a generator seeded with
``seed + 1``), fed to the original through ``x_T=`` and a replaying ``noise_like``.

Writes ``interp.safetensors``, ``loop.safetensors`` and ``config.json`` next to this file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

log = logging.getLogger("generate_with_original")

HERE = Path(__file__).resolve().parent
REPO = "Doubiiu/DynamiCrafter"
COMMIT = "c453369367122d7fbb0aa38f124e76dc8fe2a91c"
SOURCES = ["scripts/evaluation/inference.py", "lvdm/models/ddpm3d.py", "lvdm/models/samplers/ddim.py",
           "lvdm/models/utils_diffusion.py", "lvdm/modules/networks/openaimodel3d.py", "lvdm/modules/attention.py",
           "lvdm/modules/encoders/resampler.py", "lvdm/common.py", "utils/utils.py"]

SEED = 20240
FRAMES, LATENT_H, LATENT_W = 16, 8, 16
HEIGHT, WIDTH = LATENT_H * 8, LATENT_W * 8
STEPS, CFG, RESCALE, FS, SPACING = 5, 7.5, 0.7, 5, "uniform_trailing"
TASKS = {  # the original's run_application.sh seeds
    "interp": {"seed": 12306, "prompt": "a red kite turning into a blue kite"},
    "loop": {"seed": 234, "prompt": "a kite swaying in the wind"},
}
CLIP_TOKENS, CLIP_WIDTH, TEXT_TOKENS = 257, 40, 77


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed((SEED * 1000003 + zlib.crc32(name.encode())) % 2 ** 62)


class StandInVAE(torch.nn.Module):
    """8x8 patches -> 4 channels, a fixed linear map (no parameters, so the strict load is unaffected).

    Scaled so the raw latents have a spread of a few units, as the SD VAE's do before the 0.18215 factor.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = 10 * torch.randn(4, 3, 8, 8, generator=_generator("vae/weight")) / 192 ** 0.5
        self.bias = 0.05 * torch.randn(4, generator=_generator("vae/bias"))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=8)

    def decode(self, z: torch.Tensor, **_: object) -> torch.Tensor:
        return z


class StandInText(torch.nn.Module):
    """Prompt -> fixed random [77, 48] embedding (one generator per prompt)."""

    def forward(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([torch.randn(TEXT_TOKENS, 48, generator=_generator(f"text/{p}")) for p in prompts])


class StandInCLIPVision(torch.nn.Module):
    """[B, 3, H, W] in [-1, 1] -> [B, 257, 40]: 4x8 average pool, then a fixed affine map.

    The bias makes the tokens of the all-zero (mid-gray) image non-zero, as the real CLIP's are.
    """

    def __init__(self) -> None:
        super().__init__()
        features = 3 * 4 * 8
        weight = torch.randn(features, CLIP_TOKENS * CLIP_WIDTH, generator=_generator("clip/weight"))
        self.weight = weight / features ** 0.5
        self.bias = torch.randn(CLIP_TOKENS * CLIP_WIDTH, generator=_generator("clip/bias"))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(image, (4, 8)).flatten(1)
        return (pooled @ self.weight + self.bias).view(-1, CLIP_TOKENS, CLIP_WIDTH)


def _picture(name: str) -> torch.Tensor:
    """A smooth random picture [1, 3, H, W] in [-1, 1] (coarse noise, bilinear upsampled)."""
    coarse = torch.rand(1, 3, 4, 8, generator=_generator(f"image/{name}")) * 2 - 1
    return F.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)


def _blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _install_stand_ins(stubs: Path | None) -> None:
    import pytorch_lightning  # noqa: F401  (first: torchmetrics probes for torchvision at import)

    if stubs is not None:
        sys.path.insert(0, str(stubs))
    import torchvision  # noqa: F401  (the stand-in: import-time names only, nothing is called)


def _build_model(original: Path, fixture: Path):
    from omegaconf import OmegaConf
    from utils.utils import instantiate_from_config

    config = json.loads((fixture / "config.json").read_text())["LatentVisualDiffusion_config_used"]
    model = instantiate_from_config(OmegaConf.create(config)).eval()  # as inference.py (OmegaConf.load)
    sd = {**load_file(str(fixture / "weights.safetensors")), **load_file(str(fixture / "buffers.safetensors"))}
    model.load_state_dict(sd, strict=True)
    model.first_stage_model, model.cond_stage_model, model.embedder = StandInVAE(), StandInText(), StandInCLIPVision()
    return model


def _patch_sampler() -> None:
    """The only change to the original: its register_buffer moves every tensor to CUDA."""
    from lvdm.models.samplers import ddim

    ddim.DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)


def _pack_noise(seed: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_T and the per-step normals the pack's sampler draws for ``seed`` (frames-as-batch, then to b c t h w)."""
    from einops import rearrange

    shape = (FRAMES, 4, LATENT_H, LATENT_W)
    x_t = torch.randn(shape, generator=torch.manual_seed(seed), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed + 1)
    draws = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for _ in range(steps)])
    to_video = lambda x: rearrange(x, "(b t) c h w -> b c t h w", t=FRAMES)  # noqa: E731
    return to_video(x_t), torch.stack([to_video(d) for d in draws])


def _run(model, inference, task: str, videos: torch.Tensor, prompt: str, x_t: torch.Tensor, eta: float,
         noise: torch.Tensor | None) -> dict[str, object]:
    """image_guided_synthesis as inference.py calls it, recording what it hands the sampler."""
    from lvdm.models.samplers import ddim

    captured: dict[str, object] = {}
    sample = ddim.DDIMSampler.sample

    def recording_sample(self, S, batch_size, shape, conditioning=None, **kwargs):
        captured["cond"], captured["uc"] = conditioning, kwargs.get("unconditional_conditioning")
        samples, inter = sample(self, S, batch_size, shape, conditioning=conditioning, **kwargs)
        captured["final"] = samples.clone()
        return samples, inter

    noise_like = ddim.noise_like
    draws = iter(noise if noise is not None else [])

    def replaying_noise_like(shape, device, repeat=False):
        out = noise_like(shape, device, repeat)  # still consume the RNG, as the original does
        return next(draws).clone() if noise is not None else out

    ddim.DDIMSampler.sample, ddim.noise_like = recording_sample, replaying_noise_like
    try:
        with torch.no_grad():
            inference.image_guided_synthesis(
                model, [prompt], videos, (1, 4, FRAMES, LATENT_H, LATENT_W), n_samples=1, ddim_steps=STEPS,
                ddim_eta=eta, unconditional_guidance_scale=CFG, cfg_img=None, fs=FS, text_input=True,
                multiple_cond_cfg=False, loop=task == "loop", interp=task == "interp", timestep_spacing=SPACING,
                guidance_rescale=RESCALE, x_T=x_t.clone())
    finally:
        ddim.DDIMSampler.sample, ddim.noise_like = sample, noise_like
    if noise is not None and next(draws, None) is not None:
        raise RuntimeError("the original used fewer step draws than recorded")
    return captured


def _videos(task: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``videos`` [1, 3, 16, H, W] as load_data_prompts builds it: interp = 8 x image 1 then 8 x image 2."""
    first = _picture("first")
    if task == "interp":
        last = _picture("last")
        frames = [first] * (FRAMES // 2) + [last] * (FRAMES // 2)
        return torch.stack(frames, dim=2), {"image_first": first, "image_last": last}
    return torch.stack([first] * FRAMES, dim=2), {"image_first": first}


def _task_tensors(model, inference, task: str) -> dict[str, torch.Tensor]:
    spec = TASKS[task]
    videos, images = _videos(task)
    x_t, draws = _pack_noise(spec["seed"], STEPS)
    eta0 = _run(model, inference, task, videos, spec["prompt"], x_t, 0.0, None)
    again = _run(model, inference, task, videos, spec["prompt"], x_t, 0.0, None)
    if not torch.equal(eta0["final"], again["final"]):
        raise RuntimeError("the original eta=0 run is not deterministic")
    eta1 = _run(model, inference, task, videos, spec["prompt"], x_t, 1.0, draws)
    cond, uc = eta0["cond"], eta0["uc"]
    c_concat = cond["c_concat"][0]
    if not torch.equal(uc["c_concat"][0], c_concat):
        raise RuntimeError("the original's unconditional branch has another c_concat")
    context, uc_context = cond["c_crossattn"][0], uc["c_crossattn"][0]
    with torch.no_grad():
        embeds = model.embedder(videos[:, :, 0])
        uc_embeds = model.embedder(torch.zeros_like(videos[:, :, 0]))
        out = {**images, "c_concat": c_concat, "text_emb": context[:, :TEXT_TOKENS],
               "uc_text_emb": uc_context[:, :TEXT_TOKENS], "image_embeds": embeds, "uc_image_embeds": uc_embeds,
               "image_tokens": context[:, TEXT_TOKENS:], "uc_image_tokens": uc_context[:, TEXT_TOKENS:],
               "latent_first_raw": model.first_stage_model.encode(images["image_first"]),
               "x_T": x_t, "eta0.final": eta0["final"], "eta1.noise": draws, "eta1.final": eta1["final"]}
        if task == "interp":
            out["latent_last_raw"] = model.first_stage_model.encode(images["image_last"])
    if not torch.equal(model.image_proj_model(embeds), out["image_tokens"]):
        raise RuntimeError("image tokens are not Resampler(CLIP(frame 0))")
    return {k: v.contiguous().float() for k, v in out.items()}


def _noise_floor(model, inference, goldens: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, float]]:
    """The original against itself with 2 torch threads instead of 1: the float noise any faithful
    re-implementation is judged against (max |delta| / std and relative L2 of the finals)."""
    torch.set_num_threads(2)
    floor = {}
    for task, golden in goldens.items():
        again = _task_tensors(model, inference, task)
        for key in ("eta0.final", "eta1.final"):
            a, b = again[key].double(), golden[key].double()
            floor[f"{task}/{key}"] = {"max_abs_over_std": float((a - b).abs().max() / b.std()),
                                      "relative_l2": float((a - b).norm() / b.norm())}
    torch.set_num_threads(1)
    log.info("noise floor: %s", floor)
    return floor


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help=f"the {REPO} repository at {COMMIT}")
    parser.add_argument("--fixture", type=Path, default=Path(__file__).resolve().parents[1] / "parity" / "small_512",
                        help="the small_512 parity fixture folder (default: the project's tests/data/parity/small_512)")
    parser.add_argument("--stubs", type=Path, help="folder with an import-time torchvision stand-in")
    args = parser.parse_args()
    original = args.original.resolve()
    head = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and head.stdout.strip() != COMMIT:
        raise SystemExit(f"{original} is at {head.stdout.strip()}, expected {COMMIT}")

    torch.set_num_threads(1)
    _install_stand_ins(args.stubs)
    sys.path.insert(0, str(original))
    sys.path.insert(0, str(original / "scripts" / "evaluation"))
    import inference  # the original scripts/evaluation/inference.py

    _patch_sampler()
    fixture = args.fixture.resolve()
    model = _build_model(original, fixture)
    shapes, goldens = {}, {}
    for task in TASKS:
        tensors = goldens[task] = _task_tensors(model, inference, task)
        save_file(tensors, str(HERE / f"{task}.safetensors"))
        shapes[task] = {k: list(v.shape) for k, v in tensors.items()}
        log.info("%s: final |x| max %.3f, %d tensors", task, float(tensors["eta0.final"].abs().max()), len(tensors))
    floor = _noise_floor(model, inference, goldens)

    import einops
    import numpy
    import omegaconf
    import pytorch_lightning
    import safetensors

    config = {
        "source": {"repo": REPO, "commit": COMMIT, "git_blob_sha1": {s: _blob_sha1(original / s) for s in SOURCES}},
        "command": "python tests/data/parity_interp/generate_with_original.py --original <DynamiCrafter@c453369> "
                   "--stubs <torchvision stand-in>",
        "network": "shared parity/small_512 (weights.safetensors + buffers.safetensors), original "
                   "LatentVisualDiffusion, strict load",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
                     "einops": einops.__version__, "omegaconf": omegaconf.__version__,
                     "safetensors": safetensors.__version__, "pytorch_lightning": pytorch_lightning.__version__},
        "threads": 1, "seed": SEED, "tasks": TASKS,
        "sampling": {"steps": STEPS, "cfg": CFG, "guidance_rescale": RESCALE, "spacing": SPACING,
                     "dynamic_rescale": True, "fs": FS, "etas": [0.0, 1.0]},
        "frames": FRAMES, "latent_hw": [LATENT_H, LATENT_W], "image_hw": [HEIGHT, WIDTH], "scale_factor": 0.18215,
        "noise_floor_original_2_threads_vs_1": floor,
        "shapes": shapes,
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main()
