"""The Train LoRA node's step on the host equals the ORIGINAL training step (tests/data/parity_training).

The host model is the parity fixture loaded through the pack's adapter; the adapters are the host's LoRA
training modules as the node makes them (``up`` random, ``down`` zero, so the adapted model is the fixture
itself). Then the loss is the original's, and the gradient of each ``down`` is ``alpha / rank * up^T G`` with
``G`` the original's gradient of the full weight: LoRA merged the same way on both sides.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.config import VARIANTS
from dynamicrafter.training.objective import ClipBatch, Draws, ObjectiveSettings, training_loss, variant_schedule
from support.parity_data import FixtureSet, relative_l2
from support.reference_data import DATA

CASES = {"256": "small_256", "512": "small_512", "512_interp": "small_512"}
RANK, ALPHA = 4, 2.0
GRAD_L2 = 2e-3
"""As tests/parity/test_parity_training.py: fp32 round-off through the backward pass is ~1e-3 relative L2."""


def _golden(case: str):
    t = load_file(str(DATA / "parity_training" / f"{case}.safetensors"))
    batch = ClipBatch(t["latents"], t["text"], t["empty_text"], t["clip_frames"], t["clip_blank"], t["fs"].long())
    return t, batch, Draws(t["timesteps"].long(), t["noise"], t["dropout"], int(t["cond_frame"]))


def _host_layer(golden_key: str) -> str:
    name = golden_key.removeprefix("grad/").removesuffix(".weight")
    return "diffusion_model." + name.removeprefix("model.diffusion_model.")


@pytest.mark.parametrize("case", list(CASES))
def test_host_step_equals_the_original(comfy_host, case, single_thread):
    patcher_module = comfy_host.import_pack_module("nodes.adapter.patcher")
    adapters = comfy_host.import_pack_module("nodes.training.adapters")
    loop = comfy_host.import_pack_module("nodes.training.loop")
    variant = "256" if case == "256" else "512"
    ckpt = FixtureSet(DATA / "parity" / CASES[case]).checkpoint(variant)
    model = patcher_module.model_from_checkpoint(ckpt, "fp32")
    t, batch, draws = _golden(case)
    with torch.inference_mode(False):
        patcher = model.clone()
        patcher.model.requires_grad_(False)
        params = adapters.create_adapters(
            patcher, {"attention", "conv", "resampler"}, RANK, ALPHA, {}, torch.Generator().manual_seed(0)
        )
        loop.mm.load_models_gpu([patcher], memory_required=1e20, force_full_load=True)
        settings = ObjectiveSettings.for_variant(VARIANTS[case])
        loss = training_loss(
            loop.host_predictor(patcher.model), batch, draws, settings, variant_schedule(VARIANTS[case])
        )
        assert abs(loss.item() - float(t["loss"])) <= 1e-6 * float(t["loss"])
        loss.backward()
    compared = 0
    scale = ALPHA / RANK
    for key, full in t.items():
        layer = _host_layer(key)
        if not key.startswith("grad/") or f"{layer}.lora_down.weight" not in params or full.std() < 1e-6:
            continue
        up, down = params[f"{layer}.lora_up.weight"], params[f"{layer}.lora_down.weight"]
        expected = scale * up.detach().double().T @ full.double().flatten(1)
        assert relative_l2(down.grad, expected) < GRAD_L2, key
        compared += 1
    assert compared >= 40
    patcher.model.diffusion_model.forget_image_tokens()
