"""Produce the sketch-guidance goldens and the sketch-encoder manifest with the REFERENCE code.

Reference: mattyamonaca/ToonCrafter_with_SketchGuidance @ de2081fc0b7d725bdd1aa8655bfe68a623f3a124 (the code the
sketch encoder was released with): ``cldm/cldm.py`` (``ControlNet``, ``ControlledUnetModel``),
``lvdm/models/ddpm3d.py`` (``LatentVisualDiffusion.apply_model``: the control path, ``DiffusionWrapper``),
``lvdm/modules/encoders/resampler.py``, ``configs/cldm_v21.yaml``.

Runs only in a throwaway environment (see README.md here; never imported by the tests):

    python generate_with_original.py --original <extracted repository> --stubs <torchvision stand-in folder>

1. Goldens (``sketch.safetensors`` + ``config.json`` here): a small random-weight ControlledUnetModel +
   ControlNet + Resampler in the real key layouts (SD 2.1 widths: 320 channels, 1024 context; one level),
   called through the reference ``LatentVisualDiffusion.apply_model`` with and without ``control_cond``.
   Weights and inputs come from seeded generators (``_random_weights``, ``_inputs``) that the pack's test repeats
   exactly; the goldens hold the outputs and a fingerprint of the inputs.
2. Manifest (``../checkpoint_manifests/tooncrafter_sketch_encoder.json``): every key and shape of the released
   sketch encoder, from ``configs/cldm_v21.yaml``'s ``control_stage_config`` built on the meta device.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parent / "checkpoint_manifests" / "tooncrafter_sketch_encoder.json"
REPOSITORY = "mattyamonaca/ToonCrafter_with_SketchGuidance"
SOURCES = ["cldm/cldm.py", "lvdm/models/ddpm3d.py", "lvdm/modules/networks/openaimodel3d.py",
           "lvdm/modules/attention.py", "ldm/modules/attention.py", "ldm/modules/diffusionmodules/openaimodel.py",
           "lvdm/modules/encoders/resampler.py", "configs/cldm_v21.yaml", "configs/inference_512_v1.0.yaml"]
FRAMES, LATENT, HINT = 16, 4, 32  # the reference's control path hard-codes 16 frames
TIMESTEP, FS, CONTROL_SCALE = 601, 10, 0.6
WEIGHT_SCALE = 0.05

UNET = dict(in_channels=8, out_channels=4, model_channels=320, attention_resolutions=[1], num_res_blocks=1,
            channel_mult=[1], dropout=0.0, num_head_channels=64, transformer_depth=1, context_dim=1024,
            use_linear=True, use_checkpoint=False, temporal_conv=True, temporal_attention=True,
            temporal_selfatt_only=True, use_relative_position=False, use_causal_attention=False,
            temporal_length=FRAMES, addition_attention=True, image_cross_attention=True, default_fs=24,
            fs_condition=True)
CONTROLNET = dict(use_checkpoint=False, image_size=32, in_channels=4, hint_channels=1, model_channels=320,
                  attention_resolutions=[1], num_res_blocks=1, channel_mult=[1], num_head_channels=64,
                  use_spatial_transformer=True, use_linear_in_transformer=True, transformer_depth=1,
                  context_dim=1024, legacy=False)
RESAMPLER = dict(dim=64, depth=1, dim_head=32, heads=2, num_queries=16, embedding_dim=40, output_dim=1024,
                 ff_mult=4, video_length=FRAMES)


def _random_weights(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Normals x WEIGHT_SCALE for every state-dict entry, drawn in sorted key order from one generator."""
    g = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in module.state_dict().items()}
    return {k: torch.randn(shapes[k], generator=g) * WEIGHT_SCALE for k in sorted(shapes)}


def _inputs() -> dict[str, torch.Tensor]:
    """Everything the model call reads, drawn in this order from one generator (seed 2024)."""
    g = torch.Generator().manual_seed(2024)
    return {
        "x_noisy": torch.randn(1, 4, FRAMES, LATENT, LATENT, generator=g),
        "c_concat": torch.randn(1, 4, FRAMES, LATENT, LATENT, generator=g),
        "text": torch.randn(1, 77, 1024, generator=g),
        "uc_text": torch.randn(1, 77, 1024, generator=g),
        "clip": torch.randn(1, 257, 40, generator=g),
        "uc_clip": torch.randn(1, 257, 40, generator=g),
        "hint": torch.rand(1, 1, FRAMES, HINT, HINT, generator=g),
    }


def _fingerprint(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum, sum of squares and first element of each tensor (sorted by name): the test's replay check."""
    return torch.tensor([[t.double().sum(), t.double().square().sum(), t.flatten()[0]] for _, t in
                         sorted(tensors.items())], dtype=torch.float64)


def _blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _import_reference(original: Path, stubs: Path | None):
    import pytorch_lightning  # noqa: F401  (first: torchmetrics probes for torchvision at import)

    if stubs is not None:
        sys.path.insert(0, str(stubs))
    sys.path.insert(0, str(original))
    import torchvision  # noqa: F401  (the stand-in: import-time names only, nothing is called)
    from cldm.cldm import ControlledUnetModel, ControlNet
    from lvdm.models.ddpm3d import DiffusionWrapper, LatentVisualDiffusion
    from lvdm.modules.encoders.resampler import Resampler
    return ControlledUnetModel, ControlNet, DiffusionWrapper, LatentVisualDiffusion, Resampler


def goldens(original: Path, stubs: Path | None) -> None:
    _, ControlNet, DiffusionWrapper, LatentVisualDiffusion, Resampler = _import_reference(original, stubs)
    wrapper = DiffusionWrapper({"target": "cldm.cldm.ControlledUnetModel", "params": UNET}, "hybrid").eval()
    control_model = ControlNet(**CONTROLNET).eval()
    resampler = Resampler(**RESAMPLER).eval()
    weights = {"unet": _random_weights(wrapper.diffusion_model, 1), "controlnet": _random_weights(control_model, 2),
               "resampler": _random_weights(resampler, 3)}
    for module, name in ((wrapper.diffusion_model, "unet"), (control_model, "controlnet"), (resampler, "resampler")):
        module.load_state_dict(weights[name], strict=True)
    inputs = _inputs()

    # the attributes LatentVisualDiffusion.apply_model reads; the method itself is the reference's
    owner = types.SimpleNamespace(model=wrapper, control_model=control_model, control_scale=CONTROL_SCALE)
    t = torch.tensor([TIMESTEP], dtype=torch.long)
    fs = torch.tensor([FS], dtype=torch.long)
    out = {"fingerprint": _fingerprint(inputs)}
    with torch.no_grad():
        for side, text, clip in (("cond", "text", "clip"), ("uncond", "uc_text", "uc_clip")):
            tokens = resampler(inputs[clip])
            context = torch.cat([inputs[text], tokens], dim=1)
            for name, hint in (("control", inputs["hint"]), ("plain", None)):
                cond = {"c_crossattn": [context], "c_concat": [inputs["c_concat"]], "control_cond": hint}
                out[f"{side}.{name}"] = LatentVisualDiffusion.apply_model(owner, inputs["x_noisy"], t, cond, fs=fs)
            effect = (out[f"{side}.control"] - out[f"{side}.plain"]).abs().max() / out[f"{side}.plain"].std()
            print(f"{side}: control changes the output by {float(effect):.3f} x its std")
    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "sketch.safetensors"))
    commit = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True)
    config = {
        "repository": REPOSITORY,
        "commit": commit.stdout.strip() or "de2081fc0b7d725bdd1aa8655bfe68a623f3a124",
        "source_blobs": {s: _blob_sha1(original / s) for s in SOURCES},
        "torch": torch.__version__,
        "unet": UNET, "controlnet": CONTROLNET, "resampler": RESAMPLER,
        "timestep": TIMESTEP, "fs": FS, "control_scale": CONTROL_SCALE, "weight_scale": WEIGHT_SCALE,
        "weight_seeds": {"unet": 1, "controlnet": 2, "resampler": 3}, "input_seed": 2024,
        "keys": {name: {k: list(v.shape) for k, v in sd.items()} for name, sd in weights.items()},
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def manifest(original: Path, stubs: Path | None) -> None:
    from omegaconf import OmegaConf

    _, ControlNet, *_ = _import_reference(original, stubs)
    params = dict(OmegaConf.to_container(OmegaConf.load(original / "configs/cldm_v21.yaml"))["control_stage_config"]
                  ["params"])
    params["use_checkpoint"] = False  # as the gradio app builds it for inference; no parameters depend on it
    with torch.device("meta"):
        net = ControlNet(**params)
    sd = net.state_dict()
    MANIFEST.write_text(json.dumps({
        "variant": "tooncrafter_sketch_encoder",
        "source": "derived from the reference config, instantiated on the meta device",
        "derivation": f"{REPOSITORY} @ de2081fc0b7d725bdd1aa8655bfe68a623f3a124, configs/cldm_v21.yaml "
                      "control_stage_config -> cldm.cldm.ControlNet (use_checkpoint=False), torch "
                      f"{torch.__version__} CPU; keys as sketch_encoder.ckpt holds them (loaded into the ControlNet "
                      "directly by scripts/gradio/i2v_test_application.py)",
        "config": params,
        "n_keys": len(sd),
        "n_elements": sum(v.numel() for v in sd.values()),
        "keys": {k: list(v.shape) for k, v in sd.items()},
    }, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="extracted reference repository")
    parser.add_argument("--stubs", type=Path, help="folder with an import-time torchvision stand-in")
    args = parser.parse_args()
    torch.set_num_threads(1)
    goldens(args.original, args.stubs)
    manifest(args.original, args.stubs)


if __name__ == "__main__":
    main()
