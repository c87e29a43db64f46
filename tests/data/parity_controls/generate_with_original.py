"""Produce the sampler-control goldens with the ORIGINAL code (Doubiiu/DynamiCrafter @ c453369).

Three runs of the ``small_512`` parity network through the original
``scripts/evaluation/inference.py::image_guided_synthesis`` (image-to-video, ``--text_input``):

* ``multicond``: ``--multiple_cond_cfg --cfg_img`` (the original ``DDIMSampler_multicond``: text and image
  guidance scales apart), eta 0 and eta 1.
* ``partial``: partial denoise. The original DDIM grid laid over the first ``M`` training steps instead of
  all 1000 (Kijai's wrapper's ``ddpm_from``: its ``make_ddim_timesteps(..., num_ddpm_timesteps=ddpm_from)``),
  started from the start latent noised to the first timestep run with the original ``q_sample``.
* ``pinned``: frame pinning, the original sampler's own ``mask`` / ``x0`` path (``clean_cond`` False: before
  every step the kept frames are replaced by ``q_sample(x0, t)``).

Runs only in a throwaway environment (see README.md here; never imported by the tests):

    python generate_with_original.py --original <DynamiCrafter@c453369> --stubs <stand-ins>

Stand-ins, network loading and the pack's noise draws are those of ``../parity_interp/generate_with_original.py``
(imported from there). Every normal the original draws (``x_T``, ``noise_like`` per step, ``q_sample``'s noise
per step) is replayed from the draws the pack's ``DynamiCrafter Sampler`` makes for the same seed: ``x_T`` from
ComfyUI ``prepare_noise(seed)``, then one generator seeded ``seed + 1`` giving, per step, the ``q_sample`` noise
(pinned only) and then the step noise.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import save_file

log = logging.getLogger("generate_with_original")

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("parity_interp_generator",
                                               HERE.parent / "parity_interp" / "generate_with_original.py")
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

SOURCES = base.SOURCES + ["lvdm/models/samplers/ddim_multiplecond.py"]
SEED = 4321
FRAMES, LATENT_H, LATENT_W = base.FRAMES, base.LATENT_H, base.LATENT_W
STEPS, CFG, RESCALE, FS, SPACING = 5, 7.5, 0.7, 24, "uniform_trailing"
PROMPT = "a boat drifting on a lake"
RUNS = {
    "multicond": {"cfg_img": 2.5, "etas": [0.0, 1.0]},
    "partial": {"ddpm_from": 600, "etas": [0.0, 1.0]},
    "pinned": {"keep_frames": [0, 9], "etas": [0.0, 1.0]},
}


def _draws(seed: int, steps: int, per_step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_T [1,4,T,h,w] and [steps, per_step, 1,4,T,h,w] normals, in the pack sampler's order."""
    shape = (FRAMES, 4, LATENT_H, LATENT_W)
    x_t = torch.randn(shape, generator=torch.manual_seed(seed), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed + 1)
    draws = torch.stack([torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for _ in range(per_step)])
                         for _ in range(steps)])
    to_video = lambda x: rearrange(x, "... (b t) c h w -> ... b c t h w", t=FRAMES)  # noqa: E731
    return to_video(x_t), to_video(draws)


def _start_latent() -> torch.Tensor:
    """A smooth random model-scale video latent [1, 4, T, h, w] (an "existing video" to restyle or pin)."""
    coarse = torch.randn(1, 4, 4, 2, 4, generator=base._generator("start_latent"))
    return torch.nn.functional.interpolate(coarse, size=(FRAMES, LATENT_H, LATENT_W), mode="trilinear")


def _run(model, inference, name: str, eta: float, x_t: torch.Tensor, draws: torch.Tensor,
         start: torch.Tensor) -> dict[str, object]:
    """image_guided_synthesis as inference.py calls it, with the run's control, replaying every draw."""
    from lvdm.models import utils_diffusion
    from lvdm.models.samplers import ddim, ddim_multiplecond

    spec = RUNS[name]
    captured: dict[str, object] = {}
    samplers = {"ddim": ddim.DDIMSampler, "multi": ddim_multiplecond.DDIMSampler}
    originals = {key: cls.sample for key, cls in samplers.items()}
    step_draws = iter(draws[:, -1])
    q_draws = iter(draws[:, 0] if name == "pinned" else [])

    def recording(key):
        def sample(self, S, batch_size, shape, conditioning=None, **kwargs):
            captured["cond"], captured["uc"] = conditioning, kwargs.get("unconditional_conditioning")
            captured["uc_img"] = kwargs.get("unconditional_conditioning_img_nonetext")
            if name == "pinned":
                mask = torch.zeros(1, 1, FRAMES, 1, 1)
                mask[:, :, spec["keep_frames"]] = 1.0
                kwargs.update(mask=mask, x0=start.clone())
            out, inter = originals[key](self, S, batch_size, shape, conditioning=conditioning, **kwargs)
            captured["final"] = out.clone()
            captured["timesteps"] = torch.from_numpy(self.ddim_timesteps.copy())
            return out, inter
        return sample

    def replaying_noise_like(shape, device, repeat=False):
        noise_like(shape, device, repeat)  # still consume the RNG, as the original does
        return next(step_draws).clone()

    def replaying_q_sample(x_start, t, noise=None):
        return q_sample(x_start, t, noise=next(q_draws).clone())

    def ddpm_from_timesteps(ddim_discr_method, num_ddim_timesteps, num_ddpm_timesteps, verbose=True):
        """The wrapper's make_schedule passes ddpm_from as num_ddpm_timesteps."""
        return make_ddim_timesteps(ddim_discr_method, num_ddim_timesteps, spec["ddpm_from"], verbose)

    noise_like, q_sample, make_ddim_timesteps = ddim.noise_like, model.q_sample, utils_diffusion.make_ddim_timesteps
    for key, cls in samplers.items():
        cls.sample = recording(key)
    ddim.noise_like = ddim_multiplecond.noise_like = replaying_noise_like
    model.q_sample = replaying_q_sample
    if name == "partial":
        ddim.make_ddim_timesteps = ddpm_from_timesteps
        first = int(make_ddim_timesteps(SPACING, STEPS, spec["ddpm_from"], False)[-1])
        x_t = q_sample(start, torch.full((1,), first, dtype=torch.long), noise=x_t)
    captured["x_start"] = x_t.clone()
    try:
        with torch.no_grad():
            inference.image_guided_synthesis(
                model, [PROMPT], torch.stack([base._picture("boat")] * FRAMES, dim=2),
                (1, 4, FRAMES, LATENT_H, LATENT_W), n_samples=1, ddim_steps=STEPS, ddim_eta=eta,
                unconditional_guidance_scale=CFG, cfg_img=spec.get("cfg_img"), fs=FS, text_input=True,
                multiple_cond_cfg=name == "multicond", loop=False, interp=False, timestep_spacing=SPACING,
                guidance_rescale=RESCALE, x_T=x_t.clone())
    finally:
        for key, cls in samplers.items():
            cls.sample = originals[key]
        ddim.noise_like = ddim_multiplecond.noise_like = noise_like
        ddim.make_ddim_timesteps = make_ddim_timesteps
        del model.q_sample
    if next(step_draws, None) is not None or next(q_draws, None) is not None:
        raise RuntimeError("the original used fewer draws than recorded")
    return captured


def _run_tensors(model, inference, name: str) -> dict[str, torch.Tensor]:
    spec = RUNS[name]
    x_t, draws = _draws(SEED, STEPS, 2 if name == "pinned" else 1)
    start = _start_latent()
    out = {"x_T": x_t, "draws": draws, "start_latent": start}
    for eta in spec["etas"]:
        run = _run(model, inference, name, eta, x_t, draws, start)
        again = _run(model, inference, name, eta, x_t, draws, start)
        if not torch.equal(run["final"], again["final"]):
            raise RuntimeError(f"{name} eta {eta}: the original is not deterministic with replayed draws")
        out[f"eta{eta:g}.final"] = run["final"]
    cond, uc = run["cond"], run["uc"]
    context, uc_context = cond["c_crossattn"][0], uc["c_crossattn"][0]
    if name == "multicond":
        uc_img = run["uc_img"]["c_crossattn"][0]
        if not (torch.equal(uc_img[:, :base.TEXT_TOKENS], uc_context[:, :base.TEXT_TOKENS])
                and torch.equal(uc_img[:, base.TEXT_TOKENS:], context[:, base.TEXT_TOKENS:])):
            raise RuntimeError("the image-only branch is not (empty text, image tokens)")
    picture = base._picture("boat")
    with torch.no_grad():
        out.update({"image_first": picture, "latent_first_raw": model.first_stage_model.encode(picture),
                    "c_concat": cond["c_concat"][0], "text_emb": context[:, :base.TEXT_TOKENS],
                    "uc_text_emb": uc_context[:, :base.TEXT_TOKENS], "image_embeds": model.embedder(picture),
                    "uc_image_embeds": model.embedder(torch.zeros_like(picture)),
                    "x_start": run["x_start"], "timesteps": run["timesteps"]})
    return {k: v.contiguous() if v.dtype == torch.int64 else v.contiguous().float() for k, v in out.items()}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help=f"the {base.REPO} repository at {base.COMMIT}")
    parser.add_argument("--fixture", type=Path, default=Path(__file__).resolve().parents[1] / "parity" / "small_512",
                        help="the small_512 parity fixture folder (default: the project's tests/data/parity/small_512)")
    parser.add_argument("--stubs", type=Path, help="folder with an import-time torchvision stand-in")
    args = parser.parse_args()
    original = args.original.resolve()
    head = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and head.stdout.strip() != base.COMMIT:
        raise SystemExit(f"{original} is at {head.stdout.strip()}, expected {base.COMMIT}")

    torch.set_num_threads(1)
    base._install_stand_ins(args.stubs)
    sys.path.insert(0, str(original))
    sys.path.insert(0, str(original / "scripts" / "evaluation"))
    import inference  # the original scripts/evaluation/inference.py
    from lvdm.models.samplers import ddim_multiplecond

    base._patch_sampler()
    ddim_multiplecond.DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)
    model = base._build_model(original, args.fixture.resolve())
    shapes = {}
    for name in RUNS:
        tensors = _run_tensors(model, inference, name)
        save_file(tensors, str(HERE / f"{name}.safetensors"))
        shapes[name] = {k: list(v.shape) for k, v in tensors.items()}
        log.info("%s: timesteps %s, final |x| max %.3f", name, tensors["timesteps"].tolist(),
                 float(tensors["eta1.final"].abs().max()))
    config = {
        "source": {"repo": base.REPO, "commit": base.COMMIT,
                   "git_blob_sha1": {s: base._blob_sha1(original / s) for s in SOURCES}},
        "command": "python tests/data/parity_controls/generate_with_original.py --original <DynamiCrafter@c453369> "
                   "--stubs <torchvision stand-in>",
        "network": "tests/data/parity/small_512, original LatentVisualDiffusion, strict load",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
        "threads": 1, "seed": SEED, "prompt": PROMPT, "runs": RUNS,
        "sampling": {"steps": STEPS, "cfg": CFG, "guidance_rescale": RESCALE, "spacing": SPACING,
                     "dynamic_rescale": True, "fs": FS},
        "frames": FRAMES, "latent_hw": [LATENT_H, LATENT_W], "scale_factor": 0.18215, "shapes": shapes,
    }
    (HERE / "config.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main()
