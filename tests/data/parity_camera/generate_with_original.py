"""Produce the camera-control goldens with the ORIGINAL code (ZGCTroy/CamI2V @ c5d7b2f).

Runs only in a throwaway environment (see README.md here; never imported by the tests):

    python generate_with_original.py --original <CamI2V checkout> --stubs <torchvision stand-in>

* ``paths.safetensors``: ``path.txt`` (here) read as the reference's ``demo/cami2v_test.py`` reads a
  camera file (``np.loadtxt(..., comments="https")``, columns 7.. as 3x4 world-to-camera), resampled with
  ``CameraControl.data.utils.camera_pose_lerp``, turned into the model's ``RT`` with
  ``single_image_for_inference.rt34_to_44``, then normalised by the original model classes:
  ``MotionCtrl.get_batch_input_camera_condition_process`` (the 12-number pose) and
  ``CameraControlLVDM.get_relative_pose`` / ``ray_condition`` (relative poses, Plücker rays).
* ``motionctrl.safetensors``: one UNet call of the original ``MotionCtrl`` (its ``__init__`` patches the
  original ``UNetModel`` and adds the ``cc_projection`` layers) built on the ``tests/data/parity/small_256``
  network, every ``cc_projection`` re-drawn at random; the file holds those weights in the released
  key layout, the inputs and the output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
SMALL = HERE.parent / "parity" / "small_256"
COMMIT = "c5d7b2f"
SEED = 2025
FRAMES, HEIGHT, WIDTH = 16, 24, 40
SOURCES = [
    "CameraControl/base/base.py",
    "CameraControl/motionctrl/motionctrl.py",
    "CameraControl/motionctrl/motionctrl_modified_modules.py",
    "CameraControl/cameractrl/cameractrl.py",
    "CameraControl/cameractrl/cameractrl_modified_modules.py",
    "CameraControl/cameractrl/camera_pose_encoder.py",
    "CameraControl/CamI2V/cami2v.py",
    "CameraControl/CamI2V/cami2v_modified_modules.py",
    "CameraControl/CamI2V/camera_pose_encoder.py",
    "CameraControl/CamI2V/epipolar.py",
    "CameraControl/realcam_i2v/realcam_i2v.py",
    "CameraControl/data/utils.py",
    "CameraControl/data/single_image_for_inference.py",
    "lvdm/modules/networks/openaimodel3d.py",
    "lvdm/modules/attention.py",
]


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed((SEED * 1000003 + zlib.crc32(name.encode())) % 2**62)


def _blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _import_original(original: Path, stubs: Path) -> None:
    import pytorch_lightning  # noqa: F401  (first: it probes for the real torchvision at import)

    sys.path[:0] = [str(stubs), str(original)]


def _model(target: str, extra: dict):
    """The original camera class on the small_256 network; the VAE and encoders are never run."""
    from omegaconf import OmegaConf
    from utils.utils import instantiate_from_config

    config = json.loads((SMALL / "config.json").read_text())["LatentVisualDiffusion_config_used"]
    config["target"] = target
    config["params"].update(extra)
    model = instantiate_from_config(OmegaConf.create(config)).eval()
    base = {**load_file(str(SMALL / "weights.safetensors")), **load_file(str(SMALL / "buffers.safetensors"))}
    base = {k.replace("framestride_embed", "fps_embedding"): v for k, v in base.items()}  # as cami2v_test.parse_ckpt
    missing, unexpected = model.load_state_dict(base, strict=False)
    assert not unexpected, unexpected
    return model, missing


def _redraw(model, names: list[str]) -> dict[str, torch.Tensor]:
    """Re-draw the camera parameters (weight N(0,1)/sqrt(fan_in), bias 0.05 N(0,1)); return them by file key."""
    params = dict(model.named_parameters())
    out = {}
    with torch.no_grad():
        for name in names:
            p = params[name]
            draw = torch.randn(p.shape, generator=_generator(name))
            p.copy_(draw / p.shape[1] ** 0.5 if p.ndim > 1 else 0.05 * draw)
            out[name] = p.detach().clone()
    return out


def _paths(model) -> dict[str, torch.Tensor]:
    from CameraControl.data.single_image_for_inference import rt34_to_44
    from CameraControl.data.utils import camera_pose_lerp

    data = torch.from_numpy(np.loadtxt(HERE / "path.txt", comments="https"))
    w2c = data[:, 7:].reshape(-1, 3, 4)
    w2c = torch.cat([w2c, torch.tensor([[[0, 0, 0, 1]]] * w2c.shape[0])], dim=1)
    out = {"file_w2c": w2c}
    for ratio, tag in [(1.0, "r100"), (0.6, "r060")]:
        lerp = camera_pose_lerp(w2c.inverse(), round(FRAMES / ratio))[:FRAMES]
        rt = rt34_to_44(lerp.inverse()[:, :3])
        out[f"{tag}_RT"] = rt
    rt = torch.stack([out["r100_RT"], out["r060_RT"]]).float()
    out["batch_RT"] = rt
    x = torch.zeros(2, 3, FRAMES, HEIGHT, WIDTH)
    for cond, scale in [(0, 1.0), (5, 1.7)]:
        index = torch.tensor([cond, cond])
        _, kwargs = model.get_batch_input_camera_condition_process({"RT": rt}, x, index, scale, False)
        out[f"motion_RT_c{cond}"] = kwargs["camera_condition"]["RT"]
        relative = model.get_relative_pose(rt.inverse(), index, mode="left", normalize_T0=False)
        relative[:, :, :3, 3] = relative[:, :, :3, 3] * scale
        out[f"relative_c2w_c{cond}"] = relative
        k = torch.tensor([[0.5 * WIDTH, 0, 0.5 * WIDTH], [0, 0.5 * WIDTH, 0.5 * HEIGHT], [0, 0, 1.0]])
        k = k.expand(2, FRAMES, 3, 3)  # the demo's intrinsics: fx = fy = max(H, W) / 2, centre
        out[f"plucker_c{cond}"] = model.ray_condition(k, relative, HEIGHT, WIDTH, "cpu")
    return out


def _motionctrl(model, rt: torch.Tensor) -> dict[str, torch.Tensor]:
    io = load_file(str(SMALL / "unet_io.safetensors"))
    names = [n for n, _ in model.named_parameters() if "cc_projection" in n]
    weights = _redraw(model, names)
    index = torch.tensor([0, 0])
    _, kwargs = model.get_batch_input_camera_condition_process({"RT": rt}, None, index, 1.0, False)
    unet = model.model.diffusion_model
    with torch.no_grad():
        y = unet(
            io["x"], io["timesteps"], context=io["context"], fs=io["fs"], camera_condition=kwargs["camera_condition"]
        )
        y0 = unet(io["x"], io["timesteps"], context=io["context"], fs=io["fs"])
    return {
        **{f"weights/{k}": v for k, v in weights.items()},
        "x": io["x"],
        "timesteps": io["timesteps"],
        "context": io["context"],
        "fs": io["fs"],
        "camera_RT": kwargs["camera_condition"]["RT"],
        "unet_out": y,
        "unet_out_without_camera": y0,
    }


CAMERACTRL_UNET = {"num_head_channels": 16, "channel_mult": [1, 1, 1, 1], "num_res_blocks": 1}
"""small_256's UNet, narrower; init_attn (8 x 16 wide) differs from every block's width, as in the releases."""
POSE_ENCODER = {  # 002_cameractrl_256x256.yaml's, with the UNet's channels of this network
    "target": "CameraControl.cameractrl.camera_pose_encoder.CameraPoseEncoder",
    "params": {
        "downscale_factor": 8,
        "channels": [32, 32, 32, 32],
        "nums_rb": 2,
        "cin": 384,
        "ksize": 1,
        "sk": True,
        "use_conv": False,
        "compression_factor": 1,
        "temporal_attention_nhead": 8,
        "attention_block_types": ["Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 16,
    },
}


EPIPOLAR = {  # 003_cami2v_256x256.yaml's, origin_h/w the pictures' size here (64x128, latent 8x16)
    "origin_h": 64,
    "origin_w": 128,
    "num_register_tokens": 4,
    "attention_resolution": [8, 4, 2, 1],
    "add_small_perturbation_on_zero_T": True,
}
PERTURBATION_SEED = 77
REALCAM_DEPTH_SCALE = 1.6
"""CamI2V perturbs zero translations with torch.randn_like (global generator): seeded just before."""


def _cameractrl(rt: torch.Tensor, method: str = "cameractrl") -> dict[str, torch.Tensor]:
    """The original CameraCtrl (or CamI2V) on a small network, every parameter drawn at random; one UNet call."""
    from omegaconf import OmegaConf
    from utils.utils import instantiate_from_config

    config = json.loads((SMALL / "config.json").read_text())["LatentVisualDiffusion_config_used"]
    config["target"] = "CameraControl.cameractrl.cameractrl.CameraCtrl"
    config["params"]["unet_config"]["params"].update(CAMERACTRL_UNET)
    config["params"]["pose_encoder_config"] = dict(POSE_ENCODER)
    if method in ("cami2v", "realcam"):
        config["target"] = "CameraControl.CamI2V.cami2v.CamI2V"
        if method == "realcam":
            config["target"] = "CameraControl.realcam_i2v.realcam_i2v.RealCam_I2V"
        config["params"]["pose_encoder_config"]["target"] = "CameraControl.CamI2V.camera_pose_encoder.CameraPoseEncoder"
        config["params"]["add_type"] = "add_to_main_branch"
        config["params"]["epipolar_config"] = EPIPOLAR
    model = instantiate_from_config(OmegaConf.create(config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            draw = torch.randn(p.shape, generator=_generator(f"{'cami2v' if method == 'realcam' else method}/{name}"))
            if p.ndim > 1:
                p.copy_(draw / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * draw)
            else:
                p.copy_(0.1 * draw)
    io = load_file(str(SMALL / "unet_io.safetensors"))
    b, _, t, h, w = io["x"].shape
    k = torch.tensor([[0.5 * 8 * w, 0, 0.5 * 8 * w], [0, 0.5 * 8 * w, 0.5 * 8 * h], [0, 0, 1.0]]).expand(b, t, 3, 3)
    video = torch.zeros(b, 3, t, 8 * h, 8 * w)
    index = torch.tensor([0, 0])
    batch = {"RT": rt, "camera_intrinsics": k}
    if method == "realcam":  # the metric depth scale of the conditioning frame (its demo gets it from Depth Anything)
        batch["per_frame_scale"] = torch.tensor([[REALCAM_DEPTH_SCALE] * t, [REALCAM_DEPTH_SCALE / 2] * t])
    extra = {}
    with torch.no_grad():
        torch.manual_seed(PERTURBATION_SEED)
        _, kwargs = model.get_batch_input_camera_condition_process(batch, video, index, 1.0, False)
        if method == "cami2v":
            extra["mask_16"] = kwargs["camera_condition"]["sample_locs_dict"][16]
        unet = model.model.diffusion_model
        y = unet(
            io["x"], io["timesteps"], context=io["context"], fs=io["fs"], camera_condition=kwargs["camera_condition"]
        )
        y0 = unet(io["x"], io["timesteps"], context=io["context"], fs=io["fs"])
    if method == "realcam":
        return {"unet_out": y, "depth_scale": batch["per_frame_scale"][:, 0]}
    if method == "cami2v":
        extra.update(_ddim(model, io, kwargs["camera_condition"]))
        model.epipolar_config.attention_resolution = [8, 4, 2]  # 003_cami2v_512x320.yaml's: level 1 unmasked
        with torch.no_grad():
            torch.manual_seed(PERTURBATION_SEED)
            _, kw512 = model.get_batch_input_camera_condition_process(batch, video, index, 1.0, False)
            extra["unet_out_levels_842"] = model.model.diffusion_model(
                io["x"], io["timesteps"], context=io["context"], fs=io["fs"], camera_condition=kw512["camera_condition"]
            )
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("first_stage", "cond_stage", "embedder"))}
    features = kwargs["camera_condition"]["pluker_embedding_features"]
    return {
        **{f"weights/{k}": v for k, v in state.items()},
        "x": io["x"],
        "timesteps": io["timesteps"],
        "context": io["context"],
        "fs": io["fs"],
        "intrinsics": k,
        **{f"features/{i}": f for i, f in enumerate(features)},
        "unet_out": y,
        "unet_out_without_camera": y0,
        **extra,
    }


DDIM = {
    "S": 5,
    "eta": 0.0,
    "unconditional_guidance_scale": 7.5,
    "timestep_spacing": "uniform_trailing",
    "guidance_rescale": 0.7,
}
"""The reference demo's 256 settings (demo/cami2v_test.py), 5 steps; eta 0, so no noise is drawn into the result."""


def _ddim(model, io: dict[str, torch.Tensor], camera_condition: dict) -> dict[str, torch.Tensor]:
    """The original DDIMSampler with the camera on both sides (``enable_camera_condition``), camera_cfg 1."""
    from lvdm.models.samplers import ddim

    ddim.DDIMSampler.register_buffer = lambda self, name, attr: setattr(self, name, attr)  # it moves them to CUDA
    b = io["x"].shape[0]
    x_t = torch.randn(io["x"][:, :4].shape, generator=_generator("ddim/x_T"))
    uc_context = torch.randn(io["context"].shape, generator=_generator("ddim/uc_context"))
    c_concat = io["x"][:, 4:]
    cond = {"c_concat": [c_concat], "c_crossattn": [io["context"]], "camera_condition": camera_condition}
    uncond = {"c_concat": [c_concat], "c_crossattn": [uc_context]}
    with torch.no_grad():
        samples, _ = ddim.DDIMSampler(model).sample(
            batch_size=b,
            shape=tuple(x_t.shape[1:]),
            conditioning=cond,
            unconditional_conditioning=uncond,
            x_T=x_t,
            fs=io["fs"],
            verbose=False,
            enable_camera_condition=True,
            camera_cfg=1.0,
            **DDIM,
        )
    return {"ddim/x_T": x_t, "ddim/uc_context": uc_context, "ddim/final": samples}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--original", type=Path, required=True)
    parser.add_argument("--stubs", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _import_original(args.original, args.stubs)
    model, missing = _model("CameraControl.motionctrl.motionctrl.MotionCtrl", {"pose_dim": 12})
    assert all("cc_projection" in k for k in missing), missing
    paths = _paths(model)
    save_file({k: v.contiguous() for k, v in paths.items()}, str(HERE / "paths.safetensors"))
    motion = _motionctrl(model, paths["batch_RT"])
    save_file({k: v.contiguous() for k, v in motion.items()}, str(HERE / "motionctrl.safetensors"))
    camera = _cameractrl(paths["batch_RT"])
    save_file({k: v.contiguous() for k, v in camera.items()}, str(HERE / "cameractrl.safetensors"))
    cami2v = _cameractrl(paths["batch_RT"], "cami2v")
    save_file({k: v.contiguous() for k, v in cami2v.items()}, str(HERE / "cami2v.safetensors"))
    realcam = _cameractrl(paths["batch_RT"], "realcam")  # the CamI2V weights (same draws), RealCam-I2V's class
    save_file({k: v.contiguous() for k, v in realcam.items()}, str(HERE / "realcam.safetensors"))
    meta = {
        "repo": "ZGCTroy/CamI2V",
        "commit": COMMIT,
        "torch": torch.__version__,
        "threads": 1,
        "git_blob_sha1": {s: _blob_sha1(args.original / s) for s in SOURCES},
        "stand_ins": ["torchvision, open3d, imageio, pyvirtualdisplay (import-time names only; nothing is called)"],
        "diffusers": __import__("diffusers").__version__,
    }
    (HERE / "provenance.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
