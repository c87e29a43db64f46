"""Produce the ToonCrafter VAE fixtures with the ORIGINAL code (Doubiiu/ToonCrafter @ b0c47ff).

Runs only in a throwaway environment that can import the original repository (see README.md here):

    python generate_with_original.py --original /path/to/ToonCrafter

Writes, next to this file: ``weights.safetensors`` (the tiny VAE, fp16 values, checkpoint key names),
``io.safetensors`` (inputs and the original's outputs, fp32) and ``config.json`` (configuration, seeds,
provenance); and ``../tooncrafter_vae_manifest.json``: every key and shape of the full-size
``AutoencoderKL_Dualref`` built from ``configs/inference_512_v1.0.yaml`` on the meta device.

The original's attention layers call ``xformers.ops.memory_efficient_attention`` unconditionally, and
``lvdm/models/ddpm3d.py`` imports ``torchvision.utils``. Neither is installable here, so import-time
stand-ins go into ``sys.modules``: the xformers one computes exactly what xformers computes for 3-D
inputs, ``softmax(q k^T / sqrt(d)) v``; the torchvision one is never called.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import types
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

log = logging.getLogger("generate_with_original")

HERE = Path(__file__).resolve().parent
REPO = "Doubiiu/ToonCrafter"
COMMIT = "b0c47ff339c5e5ec45b84d0c6587850f242d41ef"
SOURCES = ["lvdm/models/autoencoder.py", "lvdm/models/autoencoder_dualref.py", "lvdm/models/ddpm3d.py",
           "lvdm/modules/networks/ae_modules.py", "lvdm/modules/attention_svd.py", "lvdm/basics.py",
           "configs/inference_512_v1.0.yaml", "scripts/evaluation/inference.py"]

SEED = 2024
SCALE_FACTOR = 0.18215  # configs/inference_512_v1.0.yaml
SMALL_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                  "ch_mult": [1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
LATENT_HW = (5, 8)
VIDEO_LENGTHS = (16, 17)  # 16: the released length; 17: a one-frame second chunk in the first pass


def _xformers_stand_in() -> types.ModuleType:
    def memory_efficient_attention(q, k, v, attn_bias=None, op=None):
        assert attn_bias is None
        weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        return weights @ v

    module = types.ModuleType("xformers")
    module.__version__ = "0.0.20"
    module.ops = types.ModuleType("xformers.ops")
    module.ops.memory_efficient_attention = memory_efficient_attention
    return module


def _install_stand_ins() -> None:
    import pytorch_lightning  # noqa: F401  (first: torchmetrics probes for a real torchvision at import)

    xformers = _xformers_stand_in()
    sys.modules["xformers"], sys.modules["xformers.ops"] = xformers, xformers.ops
    torchvision = types.ModuleType("torchvision")
    torchvision.utils = types.ModuleType("torchvision.utils")
    torchvision.utils.make_grid = None  # imported by ddpm3d, never called here
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = torchvision, torchvision.utils


def _blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed((SEED * 1000003 + zlib.crc32(name.encode())) % 2 ** 62)


def _fill(model: torch.nn.Module) -> None:
    """Every parameter from its own generator; nothing zero (the original zero-inits several layers)."""
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner, _, leaf = name.rpartition(".")
            noise = torch.randn(p.shape, generator=_generator(name))
            if owner in norms:
                value = 1 + 0.1 * noise if leaf == "weight" else 0.1 * noise
            elif leaf == "mix_factor":
                value = noise  # sigmoid(mix_factor) away from 0.5
            elif leaf == "bias":
                value = 0.05 * noise
            else:
                value = noise / (p[0].numel() ** 0.5)  # N(0, 1/fan_in)
            p.copy_(value.half().float())  # fp16-exact values, stored as fp16


def _manifest(autoencoder_cls, original: Path, command: str) -> dict:
    import yaml

    config = yaml.safe_load((original / "configs/inference_512_v1.0.yaml").read_text())
    first_stage = config["model"]["params"]["first_stage_config"]
    with torch.device("meta"):
        vae = autoencoder_cls(**first_stage["params"])
    sd = vae.state_dict()
    by_module = {name: sum(p.numel() for p in getattr(vae, name).parameters())
                 for name in ("encoder", "decoder", "quant_conv", "post_quant_conv")}
    return {
        "what": "state_dict keys and shapes of ToonCrafter's first stage (AutoencoderKL_Dualref); in model.ckpt "
                "they carry the prefix 'first_stage_model.'",
        "source": {"repo": REPO, "commit": COMMIT, "class": first_stage["target"],
                   "config": "configs/inference_512_v1.0.yaml (model.params.first_stage_config)",
                   "git_blob_sha1": {s: _blob_sha1(original / s) for s in SOURCES}},
        "command": command,
        "torch": torch.__version__,
        "checkpoint_prefix": "first_stage_model.",
        "n_keys": len(sd),
        "n_parameters": sum(p.numel() for p in vae.parameters()),
        "parameters_by_module": by_module,
        "keys": {k: list(v.shape) for k, v in sd.items()},
    }


def _video_decode(decode_core, first_stage, samples: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
    """inference.py l.262-270: decode all latents, decode again without latents 1 and T-2, patch frames T/2-1, T/2."""
    owner = types.SimpleNamespace(encoder_type="2d", scale_factor=SCALE_FACTOR, perframe_ae=True,
                                  en_and_decode_n_samples_a_time=None, temporal_length=16,
                                  first_stage_model=first_stage)
    images = decode_core(owner, samples, ref_context=hidden)
    kept = list(range(samples.shape[2]))
    kept.pop(1)
    kept.pop(-2)
    again = decode_core(owner, samples[:, :, kept], ref_context=hidden)
    middle = images.shape[2] // 2
    images[:, :, middle - 1:middle + 1] = again[:, :, middle - 2:middle]
    return images


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="the ToonCrafter repository at " + COMMIT)
    args = parser.parse_args()
    original = args.original.resolve()
    head = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and head.stdout.strip() != COMMIT:
        raise SystemExit(f"{original} is at {head.stdout.strip()}, expected {COMMIT}")

    _install_stand_ins()
    sys.path.insert(0, str(original))
    from einops import rearrange
    from lvdm.models.autoencoder import AutoencoderKL_Dualref
    from lvdm.models.ddpm3d import LatentDiffusion

    torch.set_num_threads(1)
    command = "python tests/data/tooncrafter_small/generate_with_original.py --original <ToonCrafter@b0c47ff>"
    manifest = _manifest(AutoencoderKL_Dualref, original, command)
    (HERE.parent / "tooncrafter_vae_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("manifest: %d keys, %d parameters (decoder %d)", manifest["n_keys"], manifest["n_parameters"],
             manifest["parameters_by_module"]["decoder"])

    torch.manual_seed(SEED)
    vae = AutoencoderKL_Dualref(SMALL_DDCONFIG, {"target": "torch.nn.Identity"}, SMALL_DDCONFIG["z_channels"]).eval()
    _fill(vae)
    downscale = 2 ** (len(SMALL_DDCONFIG["ch_mult"]) - 1)
    h, w = LATENT_HW
    images = torch.rand((2, 3, h * downscale, w * downscale), generator=_generator("io/images")) * 2 - 1
    tensors = {"images": images}
    with torch.no_grad():
        posterior, hidden = vae.encode(images, return_hidden_states=True)
        tensors["encoder_moments"] = posterior.parameters
        for i, hid in enumerate(hidden):
            tensors[f"hidden.{i}"] = hid  # frames: [first, last]
        # as get_latent_z_with_hidden_states: '(b t) c h w -> b c t h w', keep frames 0 and -1
        context = [rearrange(hid, "(b t) c h w -> b c t h w", t=2) for hid in hidden]
        for frames in VIDEO_LENGTHS:
            samples = torch.randn((1, 4, frames, h, w), generator=_generator(f"io/samples{frames}"))
            tensors[f"samples{frames}"] = samples
            tensors[f"video{frames}"] = _video_decode(LatentDiffusion.decode_core, vae, samples.clone(), context)
        z = tensors["samples16"][0].transpose(0, 1) / SCALE_FACTOR
        tensors["decoder_chunk16"] = vae.decode(z, ref_context=context, timesteps=16)

    weights = {f"first_stage_model.{k}": v.half().contiguous() for k, v in vae.state_dict().items()}
    save_file(weights, str(HERE / "weights.safetensors"))
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(HERE / "io.safetensors"))
    config = {
        "source": manifest["source"], "command": command, "torch": torch.__version__, "threads": 1,
        "ddconfig": SMALL_DDCONFIG, "embed_dim": SMALL_DDCONFIG["z_channels"], "scale_factor": SCALE_FACTOR,
        "seed": SEED, "latent_hw": list(LATENT_HW), "video_lengths": list(VIDEO_LENGTHS),
        "n_parameters": sum(p.numel() for p in vae.parameters()),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    log.info("small VAE: %d parameters; wrote %s", config["n_parameters"], ", ".join(sorted(tensors)))


if __name__ == "__main__":
    main()
