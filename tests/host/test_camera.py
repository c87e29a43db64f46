"""Camera models through the host: the loader builds them of comfy.ops layers, the camera reaches the UNet through
the conditioning the stock samplers read, and a missing or misplaced camera is refused clearly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dynamicrafter.camera import preset
from dynamicrafter.camera.layers import CAMERACTRL, CAMI2V, MOTIONCTRL, camera_hook
from dynamicrafter.camera.path import relative_c2w
from dynamicrafter.checkpoint import checkpoint_from_state_dict
from dynamicrafter.unet import DynamiCrafterUNet
from support.tiny_checkpoints import TINY_UNET, tiny_resampler_state_dict, tiny_unet_state_dict
from support.tiny_host import FRAMES, H, W, conditioning, host_conds, relative_error, tiny_checkpoint

TOL = 1e-5


def _camera_checkpoint(method: str):
    """The tiny 256 network plus random camera layers of ``method``, as one file in the released layout."""
    sd = {f"model.diffusion_model.{k}": v for k, v in tiny_unet_state_dict("256").items()}
    camera_net = DynamiCrafterUNet(dataclasses.replace(TINY_UNET, camera=method))
    g = torch.Generator().manual_seed(3)
    for key, value in camera_net.state_dict().items():
        if key.startswith("pose_encoder.") and key.endswith(".pe"):
            sd[key] = value
        elif key.startswith("pose_encoder."):
            sd[key] = torch.randn(value.shape, generator=g) / (value[0].numel() ** 0.5 if value.ndim > 1 else 10)
        elif any(part in key for part in ("cc_projection", "pluker_projection", ".epipolar.")):
            sd[f"model.diffusion_model.{key}"] = torch.randn(value.shape, generator=g) / value.shape[-1] ** 0.5
    sd.update({f"image_proj_model.{k}": v for k, v in tiny_resampler_state_dict().items()})
    return checkpoint_from_state_dict(f"256_{method}.pt", sd)


@pytest.fixture(scope="module", params=[MOTIONCTRL, CAMERACTRL, CAMI2V])
def camera_model(comfy_host, request):
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    ckpt = _camera_checkpoint(request.param)
    return ckpt, host_model.model_from_checkpoint(ckpt, "fp32")


def _conds(comfy_host, camera=None, trace_scale=1.0):
    model_module = comfy_host.import_pack_module("nodes.adapter.family")
    positive, negative = host_conds(model_module, *conditioning(11), 3)
    if camera is not None:
        nodes = comfy_host.import_pack_module("nodes.camera")
        positive, negative = nodes.DynamiCrafterApplyCamera.execute(positive, negative, camera, trace_scale).result
    return positive, negative


def _sample(model, positive, negative, seed=5):
    import comfy.sample

    latent = torch.zeros(FRAMES, 4, H, W)
    noise = comfy.sample.prepare_noise(latent, seed)
    with torch.no_grad():
        return comfy.sample.sample(
            model, noise, 3, 7.5, "euler", "ddim_uniform", positive, negative, latent, seed=seed, disable_pbar=True
        )


def test_loader_builds_the_camera_layers_of_host_ops(camera_model):
    ckpt, model = camera_model
    net = model.model.diffusion_model
    layers = [m for name, m in net.named_modules() if name.endswith(("cc_projection", "pluker_projection"))]
    # MotionCtrl: init_attn and the 16 temporal transformers; the others: all but init_attn (as the releases)
    assert len(layers) == {MOTIONCTRL: 17, CAMERACTRL: 16, CAMI2V: 16}[ckpt.unet_config.camera]
    if ckpt.unet_config.camera != MOTIONCTRL:
        layers += [m for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m not in layers]
    assert all(type(m).__module__ == "comfy.ops" for m in layers)


def test_one_host_call_equals_the_unet_with_the_camera(comfy_host, camera_model, single_thread):
    ckpt, model = camera_model
    camera = preset("orbit left", FRAMES)
    positive, _ = _conds(comfy_host, camera, trace_scale=1.5)
    model_module = comfy_host.import_pack_module("nodes.adapter.family")
    poses = positive[0][1][model_module.COND_CAMERA]
    text, _, clip, _, image_latent = conditioning(11)
    x = torch.randn(FRAMES, 4, H, W, generator=torch.Generator().manual_seed(1))
    t = torch.full((FRAMES,), 500)
    net = model.model.diffusion_model
    with torch.no_grad():
        tokens = net.image_proj_model(clip)
        host = net(
            torch.cat([x, image_latent.expand(FRAMES, -1, -1, -1)], 1),
            t,
            text.expand(FRAMES, -1, -1),
            dynamicrafter_frames=FRAMES,
            dynamicrafter_clip_vision_tokens=clip.expand(FRAMES, -1, -1),
            dynamicrafter_fs=torch.full((FRAMES,), 3),
            dynamicrafter_camera=poses.expand(FRAMES, -1, -1, -1),
        )
        unet = DynamiCrafterUNet(ckpt.unet_config).eval()
        unet.load_state_dict(ckpt.require("unet"))
        video = torch.cat([x, image_latent.expand(FRAMES, -1, -1, -1)], 1).unsqueeze(0).transpose(1, 2)
        hook = camera_hook(unet, relative_c2w(camera.w2c[None], 0, 1.5), 8 * H, 8 * W)
        options = {"dynamicrafter_camera": hook}
        direct = unet(video, t[:1], text, torch.tensor([3]), image_context=tokens, transformer_options=options)
    assert relative_error(host, direct[0].transpose(0, 1)) < TOL


def test_stock_sampler_follows_the_camera(comfy_host, camera_model, single_thread):
    _, model = camera_model
    left = _sample(model, *_conds(comfy_host, preset("orbit left", FRAMES)))
    right = _sample(model, *_conds(comfy_host, preset("orbit right", FRAMES)))
    again = _sample(model, *_conds(comfy_host, preset("orbit left", FRAMES)))
    assert torch.equal(left, again)
    assert relative_error(left, right) > 1e-3


def test_camera_model_without_a_camera_is_refused(comfy_host, camera_model):
    ckpt, model = camera_model
    name = {MOTIONCTRL: "MotionCtrl", CAMERACTRL: "CameraCtrl", CAMI2V: "CamI2V"}[ckpt.unet_config.camera]
    with pytest.raises(ValueError, match=f"{name} camera model: it needs a camera path"):
        _sample(model, *_conds(comfy_host))


def test_base_model_with_a_camera_is_refused(comfy_host):
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    model = host_model.model_from_checkpoint(tiny_checkpoint("256"), "fp32")
    with pytest.raises(ValueError, match="has no camera layers"):
        _sample(model, *_conds(comfy_host, preset("zoom in", FRAMES)))


def test_apply_camera_refuses_a_path_of_other_length(comfy_host):
    with pytest.raises(ValueError, match="the camera path has 12 frames but the video has 16"):
        _conds(comfy_host, preset("zoom in", 12))


@pytest.mark.parametrize("weight_dtype", ["fp16", "bf16"])
def test_camera_model_samples_with_half_weights(comfy_host, weight_dtype):
    """Weight dtypes as for the base models: the camera layers are stored and cast by the host like the rest."""
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    model = host_model.model_from_checkpoint(_camera_checkpoint(CAMI2V), weight_dtype)
    layers = [m for name, m in model.model.diffusion_model.named_modules() if name.endswith("pluker_projection")]
    assert {m.weight.dtype for m in layers} == {getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[weight_dtype])}
    out = _sample(model, *_conds(comfy_host, preset("orbit left", FRAMES)))
    assert torch.isfinite(out).all()
