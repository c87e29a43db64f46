"""The host's step-caching nodes (EasyCache, LazyCache; ComfyUI 0.33.0's comfy_extras) on the DynamiCrafter
MODEL: they skip UNet calls on the pack's sampler and on the stock KSampler, and the video moves by a bounded
amount from the uncached one (printed, for the README; GPU timings are the GPU issue's bench).

EasyCache wraps the diffusion model (``WrappersMP.DIFFUSION_MODEL``: the pack's network honours it, with the
frames in the batch as the host sees them); LazyCache wraps the host's noise prediction (``PREDICT_NOISE``).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch

from support.tiny_host import FRAMES, H, W, conditioning, host_conds, relative_error, tiny_checkpoint

STEPS = 20
ETA = 0.0
"""Deterministic DDIM: with the original's eta 1 each step adds fresh noise, the input changes too much from
step to step for the caches to skip anything at their default threshold (0 of 20 calls skipped here)."""


@pytest.fixture(scope="module")
def setup(comfy_host) -> dict[str, Any]:
    try:
        caching = importlib.import_module("comfy_extras.nodes_easycache")
    except ModuleNotFoundError:
        pytest.skip("this host (before 0.33.0) has no EasyCache / LazyCache nodes")
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    model_module = comfy_host.import_pack_module("nodes.adapter.family")
    return {
        "caching": caching,
        "model": host_model.model_from_checkpoint(tiny_checkpoint("512"), "fp32"),
        "conds": host_conds(model_module, *conditioning(3), 24),
        "net_class": model_module.DynamiCrafterNet,
        "sampler_nodes": comfy_host.import_pack_module("nodes.sampler"),
    }


def _sample(setup: dict[str, Any], model: Any, sampler: str, seed: int = 9) -> torch.Tensor:
    import nodes as host_nodes

    positive, negative = setup["conds"]
    latent = {"samples": torch.zeros(FRAMES, 4, H, W)}
    with torch.no_grad():
        if sampler == "pack":
            out = setup["sampler_nodes"].DynamiCrafterSampler.execute(
                model, positive, negative, latent, seed, STEPS, 7.5, ETA, -1.0, "auto", "auto"
            )
            return out.result[0]["samples"]
        (out,) = host_nodes.common_ksampler(model, seed, STEPS, 7.5, "euler", "simple", positive, negative, latent)
        return out["samples"]


def _counting_calls(setup: dict[str, Any], monkeypatch) -> list[int]:
    """Counts the network's real forward passes (cond and uncond batched together count once)."""
    calls = [0]
    original = setup["net_class"]._forward

    def counted(self, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(setup["net_class"], "_forward", counted)
    return calls


@pytest.mark.parametrize("node", ["EasyCacheNode", "LazyCacheNode"])
@pytest.mark.parametrize("sampler", ["pack", "stock"])
def test_step_caching_skips_unet_calls_and_stays_close(setup, monkeypatch, node, sampler):
    calls = _counting_calls(setup, monkeypatch)
    plain = _sample(setup, setup["model"], sampler)
    plain_calls = calls[0]

    calls[0] = 0
    cached_model = getattr(setup["caching"], node).execute(setup["model"], 0.2, 0.15, 0.95, False).result[0]
    cached = _sample(setup, cached_model, sampler)
    cached_calls = calls[0]

    assert plain_calls >= STEPS and cached_calls < plain_calls, f"{node}: {cached_calls} of {plain_calls} UNet calls"
    assert torch.isfinite(cached).all()
    error = relative_error(cached, plain)
    other_seed = relative_error(_sample(setup, setup["model"], sampler, seed=10), plain)
    print(
        f"\n{node} on the {sampler} sampler: {cached_calls} of {plain_calls} UNet calls, moved {error:.3f} "
        f"(another seed: {other_seed:.3f})"
    )
    assert 0 < error < other_seed  # a cached step changes the video less than another seed does
    # the caching node works on a clone: the model it was given samples as before
    calls[0] = 0
    assert torch.equal(_sample(setup, setup["model"], sampler), plain) and calls[0] == plain_calls
