"""Produce the Analytic-Init goldens and the CIL checkpoint layout with the REFERENCE code
(thu-ml/cond-image-leakage @ 5075e25, ``examples/DynamiCrafter``).

1. ``analytic.safetensors``: the ``small_512`` parity network built as the reference's
   ``lvdm.models.ddpm3dInference.LatentVisualDiffusion`` (loaded strictly), run through the reference's
   ``scripts/evaluation/inference.py::image_guided_synthesis_analytic`` (``whether_analytic_init=1``, its DDIM
   sampler with ``ddpm_from=M``) with small random statistics written in the released files' layout
   (``{"Expectation_X0": [1, 4, 16, h, w], "Tr_Cov_d": 0-dim}``, ``torch.save``d, read by its ``torch.load``).
2. ``cil_layout.json``: the full-size reference model of ``configs/inference_{512,1024}_v1.0.yaml`` on the meta
   device: its state-dict keys and shapes (the released CIL checkpoints load into it with ``strict=True``), as
   a count and a SHA-256 over ``key:shape`` lines, compared with the project's DynamiCrafter manifests.

Runs only in a throwaway environment (see README.md here; never imported by the tests):

    python generate_with_original.py --reference <cond-image-leakage checkout> --stubs <torchvision stand-in>

Stand-ins (VAE, text, CLIP vision) and the pack's noise draws are those of ``../parity_interp/generate_with_original.py``
(imported from there). The reference's normals are replayed: its ``eps = torch.randn_like(mu_p)`` is the pack
sampler's start draw (ComfyUI ``prepare_noise(seed)``), each step's ``noise_like`` the draw of a generator seeded
``seed + 1``. Patches: the samplers' ``register_buffer`` (moves tensors to CUDA) is a plain ``setattr``, and
``Tensor.to('cuda')`` stays on the CPU while the reference function runs.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

log = logging.getLogger("generate_with_original")

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("parity_interp_generator",
                                               HERE.parent / "parity_interp" / "generate_with_original.py")
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

REPO = "thu-ml/cond-image-leakage"
COMMIT = "5075e25d6a10ffe7f12f08836f6988a2850a40d3"
SUBDIR = "examples/DynamiCrafter"
MODEL_TARGET = "lvdm.models.ddpm3dInference.LatentVisualDiffusion"
SOURCES = ["scripts/evaluation/inference.py", "lvdm/models/ddpm3dInference.py", "lvdm/models/samplers/ddim.py",
           "lvdm/models/utils_diffusion.py", "lvdm/modules/networks/openaimodel3d.py", "lvdm/modules/attention.py",
           "lvdm/modules/encoders/resampler.py", "lvdm/modules/encoders/condition.py", "lvdm/common.py",
           "utils/utils.py", "configs/inference_512_v1.0.yaml", "configs/inference_1024_v1.0.yaml"]
SEED = 777
FRAMES, LATENT_H, LATENT_W = base.FRAMES, base.LATENT_H, base.LATENT_W
STEPS, CFG, RESCALE, FS, SPACING = 5, 7.5, 0.7, 24, "uniform_trailing"
PROMPT = "a lighthouse in a storm"
RUNS = [{"M": 850, "eta": 1.0}, {"M": 850, "eta": 0.0}, {"M": 1000, "eta": 1.0}]


def _statistics() -> dict[str, torch.Tensor]:
    """Random statistics in the released layout: a smooth mean latent and a trace below 1."""
    coarse = torch.randn(1, 4, 4, 2, 4, generator=base._generator("cil/mean"))
    mean = torch.nn.functional.interpolate(coarse, size=(FRAMES, LATENT_H, LATENT_W), mode="trilinear")
    return {"Expectation_X0": mean.contiguous(), "Tr_Cov_d": torch.tensor(0.6321, dtype=torch.float32)}


@contextlib.contextmanager
def _cuda_stays_on_cpu():
    original = torch.Tensor.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if isinstance(a, str) and a.startswith("cuda") else a for a in args)
        return original(self, *args, **kwargs)

    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.Tensor.to = original


def _run(model, inference, stats_path: Path, m: int, eta: float, eps: torch.Tensor, draws: torch.Tensor) -> dict:
    from lvdm.models.samplers import ddim

    captured: dict[str, object] = {}
    sample, noise_like, randn_like = ddim.DDIMSampler.sample, ddim.noise_like, torch.randn_like
    step_draws, start_draws = iter(draws), iter([eps])

    def recording(self, S, batch_size, shape, conditioning=None, **kwargs):
        captured["cond"], captured["uc"] = conditioning, kwargs.get("unconditional_conditioning")
        captured["x_T"], captured["ddpm_from"] = kwargs["x_T"].clone(), kwargs["ddpm_from"]
        out, inter = sample(self, S, batch_size, shape, conditioning=conditioning, **kwargs)
        captured["final"], captured["timesteps"] = out.clone(), torch.from_numpy(self.ddim_timesteps.copy())
        return out, inter

    def replaying_noise_like(shape, device, repeat=False):
        noise_like(shape, device, repeat)  # still consume the RNG, as the reference does
        return next(step_draws).clone()

    def replaying_randn_like(like, *args, **kwargs):
        randn_like(like, *args, **kwargs)
        start = next(start_draws)
        if start.shape != like.shape:
            raise RuntimeError(f"eps is drawn with shape {list(like.shape)}, expected {list(start.shape)}")
        return start.clone()

    ddim.DDIMSampler.sample, ddim.noise_like, torch.randn_like = recording, replaying_noise_like, replaying_randn_like
    try:
        with torch.no_grad(), _cuda_stays_on_cpu():
            inference.image_guided_synthesis_analytic(
                model, [PROMPT], torch.stack([base._picture("lighthouse")] * FRAMES, dim=2),
                (1, 4, FRAMES, LATENT_H, LATENT_W), n_samples=1, ddim_steps=STEPS, ddim_eta=eta,
                unconditional_guidance_scale=CFG, cfg_img=None, fs=FS, text_input=True, multiple_cond_cfg=False,
                loop=False, interp=False, timestep_spacing=SPACING, guidance_rescale=RESCALE, M=m,
                analytic_init_path=str(stats_path), whether_analytic_init=1)
    finally:
        ddim.DDIMSampler.sample, ddim.noise_like, torch.randn_like = sample, noise_like, randn_like
    if next(step_draws, None) is not None or next(start_draws, None) is not None:
        raise RuntimeError("the reference used fewer draws than recorded")
    return captured


def _analytic_goldens(model, inference) -> dict[str, torch.Tensor]:
    stats = _statistics()
    eps, draws = base._pack_noise(SEED, STEPS)
    out: dict[str, torch.Tensor] = {**stats, "eps": eps, "draws": draws}
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "initial_noise_small.pt"
        torch.save(stats, stats_path)
        for spec in RUNS:
            run = _run(model, inference, stats_path, spec["M"], spec["eta"], eps, draws)
            again = _run(model, inference, stats_path, spec["M"], spec["eta"], eps, draws)
            if not torch.equal(run["final"], again["final"]):
                raise RuntimeError(f"{spec}: the reference is not deterministic with replayed draws")
            out.update({f"M{spec['M']}.x_T": run["x_T"], f"M{spec['M']}.timesteps": run["timesteps"],
                        f"M{spec['M']}.eta{spec['eta']:g}.final": run["final"]})
    cond, uc = run["cond"], run["uc"]
    context, uc_context = cond["c_crossattn"][0], uc["c_crossattn"][0]
    picture = base._picture("lighthouse")
    with torch.no_grad():
        out.update({"c_concat": cond["c_concat"][0], "text_emb": context[:, :base.TEXT_TOKENS],
                    "uc_text_emb": uc_context[:, :base.TEXT_TOKENS], "image_embeds": model.embedder(picture),
                    "uc_image_embeds": model.embedder(torch.zeros_like(picture))})
    return {k: v.contiguous() if v.dtype == torch.int64 else v.contiguous().float() for k, v in out.items()}


def _build_small_model(fixture: Path):
    """The small_512 network as the reference's inference model class, with the parity stand-ins."""
    config_path = fixture / "config.json"
    config = json.loads(config_path.read_text())
    config["LatentVisualDiffusion_config_used"]["target"] = MODEL_TARGET
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        for name in ("weights.safetensors", "buffers.safetensors"):
            (Path(tmp) / name).symlink_to(fixture / name)
        return base._build_model(None, Path(tmp))


def _layout_digest(keys_and_shapes: list[tuple[str, list[int]]]) -> str:
    text = "".join(f"{k}:{'x'.join(map(str, s))}\n" for k, s in keys_and_shapes)
    return hashlib.sha256(text.encode()).hexdigest()


def _full_size_layout(reference: Path, resolution: str) -> list[tuple[str, list[int]]]:
    """Keys and shapes of the reference inference model, built on the meta device (CLIP towers unpretrained)."""
    import open_clip
    from omegaconf import OmegaConf
    from utils.utils import instantiate_from_config

    config = OmegaConf.load(reference / "configs" / f"inference_{resolution}_v1.0.yaml")
    config.model.params.unet_config.params.use_checkpoint = False
    models = importlib.import_module(MODEL_TARGET.rsplit(".", 1)[0])
    create, module_to, build = open_clip.create_model_and_transforms, torch.nn.Module.to, models.instantiate_from_config

    def on_meta(sub_config):
        with torch.device("meta"):
            return build(sub_config)

    open_clip.create_model_and_transforms = lambda arch, **kw: create(arch, **{**kw, "pretrained": None})
    torch.nn.Module.to = lambda self, *a, **kw: self  # meta tensors cannot move; nothing needs to
    models.instantiate_from_config = on_meta  # sub-networks on meta, the DDPM schedule on the CPU
    try:
        model = instantiate_from_config(config.model)
    finally:
        open_clip.create_model_and_transforms, torch.nn.Module.to = create, module_to
        models.instantiate_from_config = build
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def _layout_record(reference: Path, manifests: Path) -> dict:
    record = {}
    for resolution in ("512", "1024"):
        layout = _full_size_layout(reference, resolution)
        ours = json.loads((manifests / f"dynamicrafter_{resolution}.json").read_text())["keys"]
        same = layout == [(k, list(s)) for k, s in ours.items()]
        record[resolution] = {"config": f"{SUBDIR}/configs/inference_{resolution}_v1.0.yaml", "n_keys": len(layout),
                              "sha256_key_shape_lines": _layout_digest(layout),
                              "equal_to_manifest": f"dynamicrafter_{resolution}.json" if same else None}
        log.info("CIL %s: %d keys, equal to dynamicrafter_%s.json: %s", resolution, len(layout), resolution, same)
    return record


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help=f"the {REPO} repository at {COMMIT}")
    parser.add_argument("--fixture", type=Path, default=HERE.parent / "parity" / "small_512",
                        help="the small_512 parity fixture folder (default: the project's tests/data/parity/small_512)")
    parser.add_argument("--stubs", type=Path, help="folder with an import-time torchvision stand-in")
    args = parser.parse_args()
    reference = args.reference.resolve()
    head = subprocess.run(["git", "-C", str(reference), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and head.stdout.strip() != COMMIT:
        raise SystemExit(f"{reference} is at {head.stdout.strip()}, expected {COMMIT}")
    code = reference / SUBDIR

    torch.set_num_threads(1)
    base._install_stand_ins(args.stubs)
    sys.path.insert(0, str(code))
    sys.path.insert(0, str(code / "scripts" / "evaluation"))
    import inference  # the reference's scripts/evaluation/inference.py

    base._patch_sampler()
    tensors = _analytic_goldens(_build_small_model(args.fixture.resolve()), inference)
    save_file(tensors, str(HERE / "analytic.safetensors"))
    for spec in RUNS:
        log.info("M %d eta %g: timesteps %s, final |x| max %.3f", spec["M"], spec["eta"],
                 tensors[f"M{spec['M']}.timesteps"].tolist(),
                 float(tensors[f"M{spec['M']}.eta{spec['eta']:g}.final"].abs().max()))
    layout = _layout_record(code, HERE.parent / "checkpoint_manifests")
    import open_clip
    config = {
        "source": {"repo": REPO, "commit": COMMIT, "subdir": SUBDIR,
                   "git_blob_sha1": {s: base._blob_sha1(code / s) for s in SOURCES}},
        "command": "python tests/data/parity_cil/generate_with_original.py --reference <cond-image-leakage@5075e25> "
                   "--stubs <torchvision stand-in>",
        "network": f"tests/data/parity/small_512, reference {MODEL_TARGET}, strict load",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "open_clip": getattr(open_clip, "__version__", None) or open_clip.version.__version__},
        "threads": 1, "seed": SEED, "prompt": PROMPT, "runs": RUNS,
        "sampling": {"steps": STEPS, "cfg": CFG, "guidance_rescale": RESCALE, "spacing": SPACING,
                     "dynamic_rescale": True, "fs": FS},
        "frames": FRAMES, "latent_hw": [LATENT_H, LATENT_W],
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    (HERE / "cil_layout.json").write_text(json.dumps({
        "source": config["source"] | {"git_blob_sha1": None},
        "derivation": "reference LatentVisualDiffusion (lvdm.models.ddpm3dInference) from the inference config, "
                      "unet use_checkpoint=False, built under torch.device('meta') with open_clip pretrained=None; "
                      "key order = module.state_dict() order; digest over '<key>:<d0>x<d1>...\\n' lines",
        "loading": "scripts/evaluation/inference.py load_model_checkpoint: state_dict (or DeepSpeed 'module', "
                   "prefix '_forward_module.' removed) loaded with strict=True, so released CIL files hold these keys",
        "layouts": layout}, indent=1) + "\n")


if __name__ == "__main__":
    main()
