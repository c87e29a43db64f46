"""Produce the FreeNoise goldens with the REFERENCE code (AILab-CVC/FreeNoise, applied to the original DynamiCrafter).

Runs only in a throwaway environment (see README.md here); never imported by the tests:

    python generate_with_reference.py --freenoise /path/to/FreeNoise --original /path/to/DynamiCrafter

Three sets, each from the release's own code, executed from its files:

* ``noise.safetensors``: the release's noise-rescheduling loop (``scripts/evaluation/inference_freenoise.py``,
  the lines from ``for frame_index in range(args.window_size, ...`` to the assignment), executed on a given
  i.i.d. noise tensor after ``random.seed(seed)`` (what its ``seed_everything`` does to Python's generator).
* ``attention.safetensors``: the release's ``lvdm/modules/attention_freenoise.py::CrossAttention`` (temporal
  self-attention, ``temporal_length=16``) on given inputs with ``context_next`` = the release's
  ``scripts/evaluation/funcs.py::get_views`` windows (the function's source executed alone: the module
  imports decord).
* ``ddim_32.safetensors``, ``ddim_64.safetensors``: the ADAPTATION to DynamiCrafter: the original DynamiCrafter
  ``LatentVisualDiffusion`` (small_512 parity network, strict load) whose temporal attentions (in-block and
  ``init_attn``) run the release's ``CrossAttention.forward`` with ``context_next`` = ``get_views`` (as the
  release's UNet passes it), whose spatial cross-attentions run the original forward once per window on that
  window's frames with the image tokens of their position in it and are fused with the release's
  ``generate_weight_sequence`` weights (the pack's rule for DynamiCrafter's per-frame tokens), sampled by the
  original ``DDIMSampler`` from the release's rescheduled noise.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import random
import sys
import tempfile
import zlib
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
FREENOISE = ("AILab-CVC/FreeNoise", "404b68b1fea597b162fa29320f8f5ecc394717a6")
ORIGINAL = ("Doubiiu/DynamiCrafter", "c453369367122d7fbb0aa38f124e76dc8fe2a91c")
NOISE_FILE = "scripts/evaluation/inference_freenoise.py"
VIEWS_FILE = "scripts/evaluation/funcs.py"
ATTENTION_FILE = "lvdm/modules/attention_freenoise.py"
WINDOW, STRIDE, SEED = 16, 4, 123
LATENT_H, LATENT_W, TEXT = 8, 16, 77
STEPS, CFG, RESCALE, FS, SPACING = 3, 7.5, 0.7, 24, "uniform_trailing"


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed((SEED * 1000003 + zlib.crc32(name.encode())) % 2**62)


def _blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _release_noise_loop(freenoise: Path) -> str:
    """The release's rescheduling loop, as written (dedented), operating on ``x_T_total`` and ``args``."""
    lines = (freenoise / NOISE_FILE).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "for frame_index in range(args.window_size" in line)
    body = lines[start : start + 4]
    indent = len(body[0]) - len(body[0].lstrip())
    return "\n".join(line[indent:] for line in body)


def _release_get_views(freenoise: Path):
    tree = ast.parse((freenoise / VIEWS_FILE).read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_views")
    scope: dict = {}
    exec(compile(ast.Module([node], []), str(freenoise / VIEWS_FILE), "exec"), scope)
    return scope["get_views"]


def _release_attention(freenoise: Path):
    spec = importlib.util.spec_from_file_location("freenoise_attention", freenoise / ATTENTION_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports lvdm.common / lvdm.basics: the original's helpers of the same names
    return module


def reschedule(loop: str, noise: torch.Tensor, frames: int, seed: int) -> torch.Tensor:
    """Run the release's loop on ``noise`` [B, C, T, h, w] (its ``x_T_total`` has a samples axis in front)."""
    args = argparse.Namespace(window_size=WINDOW, window_stride=STRIDE, frames=frames)
    scope = {"x_T_total": noise.clone()[None], "args": args, "random": random}
    random.seed(seed)
    exec(loop, scope)
    return scope["x_T_total"][0]


def noise_set(loop: str) -> dict[str, torch.Tensor]:
    out = {}
    for frames in (32, 64):
        base = torch.randn(1, 4, frames, LATENT_H, LATENT_W, generator=_gen(f"noise/{frames}"))
        out[f"base_{frames}"] = base
        out[f"rescheduled_{frames}"] = reschedule(loop, base, frames, SEED + frames)
    return out


def attention_set(attention_module, get_views) -> dict[str, torch.Tensor]:
    torch.manual_seed(SEED)
    heads, dim_head, frames, rows = 4, 8, 40, 6
    attn = attention_module.CrossAttention(heads * dim_head, None, heads, dim_head, temporal_length=16).eval()
    for name, p in attn.named_parameters():
        p.data = torch.randn(p.shape, generator=_gen(f"attn/{name}")) / (p.shape[-1] ** 0.5)
    x = torch.randn(rows, frames, heads * dim_head, generator=_gen("attn/x"))
    with torch.no_grad():
        out = attn(x, context_next=get_views(frames, WINDOW, STRIDE))
    weights = {f"weight.{k}": v.detach().clone() for k, v in attn.state_dict().items()}
    return {**weights, "x": x, "out": out}


def _adapt(model, attention_module, views: list[tuple[int, int]], frames: int) -> None:
    """Make the original UNet FreeNoise's (see the module docstring)."""
    from lvdm.modules.attention import SpatialTransformer, TemporalTransformer

    release_forward = attention_module.CrossAttention.forward
    weights_of = attention_module.generate_weight_sequence
    unet = model.model.diffusion_model
    for module in unet.modules():
        if isinstance(module, TemporalTransformer):
            for block in module.transformer_blocks:
                for attn in (block.attn1, block.attn2):
                    attn.img_cross_attention = False  # the release's name for the (absent) image branch
                    attn.forward = partial(release_forward, attn, context_next=views)
        if isinstance(module, SpatialTransformer):
            for block in module.transformer_blocks:
                block.attn2.forward = partial(_windowed_spatial, block.attn2.forward, views, frames, weights_of)


def _windowed_spatial(forward, views, frames, weights_of, x, context=None, mask=None):
    """The original spatial cross-attention per window, frames reading their position's tokens; fused."""
    videos = x.shape[0] // frames
    text, tokens = context[:, :TEXT], context[:, TEXT:]
    value, count = torch.zeros_like(x), torch.zeros(x.shape[0], 1, 1)
    for start, end in views:
        weights = weights_of(end - start)
        for v in range(videos):
            rows = list(range(v * frames + start, v * frames + end))
            pos_tokens = torch.stack(
                [tokens[r, 16 * (f - start) : 16 * (f - start) + 16] for f, r in zip(range(start, end), rows)]
            )
            out = forward(x[rows], context=torch.cat([text[rows], pos_tokens], dim=1))
            w = torch.tensor(weights, dtype=x.dtype).view(-1, 1, 1)
            value[rows] += out * w
            count[rows] += w
    return value / count


def ddim_set(original: Path, fixture: Path, loop: str, attention_module, get_views, frames: int) -> dict:
    sys.path.insert(0, str(HERE.parent / "parity_interp"))
    import generate_with_original as interp  # the stand-in encoders and the strict build of small_512

    model = interp._build_model(original, fixture)
    interp._patch_sampler()
    from lvdm.models.samplers.ddim import DDIMSampler

    views = get_views(frames, WINDOW, STRIDE)
    _adapt(model, attention_module, views, frames)
    shape = (1, 4, frames, LATENT_H, LATENT_W)
    base = torch.randn(shape, generator=_gen(f"ddim/noise/{frames}"))
    x_T = reschedule(loop, base, frames, SEED)
    latent = torch.randn(1, 4, 1, LATENT_H, LATENT_W, generator=_gen("ddim/latent")).repeat(1, 1, frames, 1, 1)
    text = torch.randn(1, TEXT, 48, generator=_gen("ddim/text"))
    uc_text = torch.randn(1, TEXT, 48, generator=_gen("ddim/uc_text"))
    embeds = torch.randn(1, 257, 40, generator=_gen("ddim/clip"))
    uc_embeds = torch.randn(1, 257, 40, generator=_gen("ddim/uc_clip"))
    fs = torch.tensor([FS])
    with torch.no_grad():
        tokens, uc_tokens = model.image_proj_model(embeds), model.image_proj_model(uc_embeds)
        cond = {"c_crossattn": [torch.cat([text, tokens], 1)], "c_concat": [latent]}
        uc = {"c_crossattn": [torch.cat([uc_text, uc_tokens], 1)], "c_concat": [latent]}
        t999 = torch.tensor([999])
        unet_out = model.apply_model(x_T, t999, cond, fs=fs)
        sampler = DDIMSampler(model)
        finals = []
        for _ in range(2):
            torch.manual_seed(0)
            final, _ = sampler.sample(
                S=STEPS,
                conditioning=cond,
                batch_size=1,
                shape=shape[1:],
                verbose=False,
                unconditional_guidance_scale=CFG,
                unconditional_conditioning=uc,
                eta=0.0,
                x_T=x_T.clone(),
                fs=fs,
                timestep_spacing=SPACING,
                guidance_rescale=RESCALE,
            )
            finals.append(final)
    if not torch.equal(finals[0], finals[1]):
        raise RuntimeError("the adapted reference run is not deterministic")
    return {
        "base": base,
        "x_T": x_T,
        "c_concat": latent,
        "text_emb": text,
        "uc_text_emb": uc_text,
        "image_embeds": embeds,
        "uc_image_embeds": uc_embeds,
        "image_tokens": tokens,
        "uc_image_tokens": uc_tokens,
        "fs": fs,
        "unet_out_t999": unet_out,
        "eta0.final": finals[0],
    }


def _stub_torchvision() -> None:
    """An import-time stand-in for torchvision (only imported by the original's training code paths)."""
    folder = Path(tempfile.mkdtemp()) / "torchvision"
    folder.mkdir()
    (folder / "__init__.py").write_text("from . import utils, transforms\n")
    (folder / "utils.py").write_text("def make_grid(*a, **k):\n    raise NotImplementedError\n")
    (folder / "transforms.py").write_text("")
    sys.path.insert(0, str(folder.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freenoise", type=Path, required=True, help=f"{FREENOISE[0]} at {FREENOISE[1]}")
    parser.add_argument("--original", type=Path, required=True, help=f"{ORIGINAL[0]} at {ORIGINAL[1]}")
    parser.add_argument("--fixture", type=Path, default=HERE.parent / "parity" / "small_512")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import pytorch_lightning  # noqa: F401  (before the stand-in: torchmetrics probes torchvision)

    _stub_torchvision()
    sys.path.insert(0, str(args.original))
    loop, get_views = _release_noise_loop(args.freenoise), _release_get_views(args.freenoise)
    attention_module = _release_attention(args.freenoise)
    save_file(noise_set(loop), str(HERE / "noise.safetensors"))
    save_file(attention_set(attention_module, get_views), str(HERE / "attention.safetensors"))
    for frames in (32, 64):
        tensors = ddim_set(args.original, args.fixture, loop, attention_module, get_views, frames)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(HERE / f"ddim_{frames}.safetensors"))
    sources = {
        FREENOISE[0]: {p: _blob_sha1(args.freenoise / p) for p in (NOISE_FILE, VIEWS_FILE, ATTENTION_FILE)},
        ORIGINAL[0]: {
            p: _blob_sha1(args.original / p)
            for p in (
                "lvdm/modules/attention.py",
                "lvdm/modules/networks/openaimodel3d.py",
                "lvdm/models/ddpm3d.py",
                "lvdm/models/samplers/ddim.py",
            )
        },
    }
    config = {
        "source": {
            "freenoise": {"repo": FREENOISE[0], "commit": FREENOISE[1]},
            "original": {"repo": ORIGINAL[0], "commit": ORIGINAL[1]},
            "git_blob_sha1": sources,
        },
        "adaptation": "FreeNoise (release for VideoCrafter) applied to the original DynamiCrafter UNet: release "
        "temporal attention with context_next; spatial image tokens per window position, fused "
        "with the release's weights",
        "command": "python tests/data/parity_freenoise/generate_with_reference.py --freenoise <FreeNoise@404b68b> "
        "--original <DynamiCrafter@c453369>",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
        "threads": 1,
        "freenoise": {"window": WINDOW, "stride": STRIDE},
        "noise_seeds": {"32": SEED + 32, "64": SEED + 64, "ddim": SEED},
        "sampling": {
            "steps": STEPS,
            "cfg": CFG,
            "guidance_rescale": RESCALE,
            "spacing": SPACING,
            "fs": FS,
            "eta": 0.0,
            "dynamic_rescale": True,
        },
        "attention": {"heads": 4, "dim_head": 8, "frames": 40, "rows": 6, "temporal_length": 16},
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main()
