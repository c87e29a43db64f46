"""Camera Guidance: the reference's camera CFG term through the host's CFG, and nothing at scale 1."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.camera import preset
from dynamicrafter.camera.layers import CAMERACTRL
from support.tiny_host import FRAMES

from .test_camera import _camera_checkpoint, _conds, _sample  # noqa: TID252  (the tiny camera set-up)


@pytest.fixture(scope="module")
def model(comfy_host):
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    return host_model.model_from_checkpoint(_camera_checkpoint(CAMERACTRL), "fp32")


def _guided(comfy_host, model, scale, schedule="constant"):
    nodes = comfy_host.import_pack_module("nodes.camera_guidance")
    return nodes.DynamiCrafterCameraGuidance.execute(model, scale, schedule).result[0]


def test_scale_one_changes_nothing(comfy_host, model, single_thread):
    conds = _conds(comfy_host, preset("orbit left", FRAMES))
    assert torch.equal(_sample(_guided(comfy_host, model, 1.0), *conds), _sample(model, *conds))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_term_is_the_references(comfy_host, model, single_thread, schedule):
    """At every step: (1 - s) u' + s c == u + s (c - u) + (k - 1) w(t) (c - c_without_camera)."""
    import comfy.samplers

    family = comfy_host.import_pack_module("nodes.adapter.family")
    guided = _guided(comfy_host, model, 2.5, schedule).clone()
    seen = []

    def spy(args):
        """Runs after the camera guidance, inside the sampling (where the host can run its model)."""
        conds, x, sigma = args["conds"], args["input"], args["sigma"]
        cond, uncond = comfy.samplers.calc_cond_batch(args["model"], conds, x, sigma, args["model_options"])
        drop = family.COND_CAMERA
        stripped = [{**c, "model_conds": {k: v for k, v in c["model_conds"].items() if k != drop}} for c in conds[0]]
        (without,) = comfy.samplers.calc_cond_batch(args["model"], [stripped], x, sigma, args["model_options"])
        t = float(args["model"].model_sampling.timestep(sigma)[0])
        seen.append((args["conds_out"], cond, uncond, without, args["cond_scale"], t))
        return args["conds_out"]

    guided.set_model_sampler_pre_cfg_function(spy)
    _sample(guided, *_conds(comfy_host, preset("orbit left", FRAMES)))
    assert seen
    for (got_cond, got_uncond), cond, uncond, without, s, t in seen:
        weight = 1.0 if schedule == "constant" else torch.cos(torch.tensor((1 - t / 999) * torch.pi / 2)).item()
        expected = uncond + s * (cond - uncond) + 1.5 * weight * (cond - without)
        torch.testing.assert_close(got_cond, cond)
        torch.testing.assert_close((1 - s) * got_uncond + s * got_cond, expected, rtol=1e-4, atol=1e-4)
        assert (cond - without).abs().max() > 1e-3  # the camera matters, so the check can fail
