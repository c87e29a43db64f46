"""The pack's models are managed as the host's own: the same patcher class and load options as a stock model
loaded in the same process.

On an NVIDIA card, ComfyUI 0.33.0's ``main.py`` turns ``comfy.model_patcher.CoreModelPatcher`` into
``ModelPatcherDynamic`` (dynamic VRAM), and the stock loaders then assign the file's tensors to the network
instead of copying them. These CPU machines cannot run that class (it reroutes CPU models to the plain
patcher), so the test puts a streaming stand-in where ``main.py`` would put it and checks that the
DynamiCrafter UNet, the ToonCrafter VAE and the host's stock VAE (``comfy.sd.VAE``) all get it and all load with the same ``assign``; with the plain patcher, none assigns. The
dynamic run itself on a GPU is the GPU issue's bench script.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dynamicrafter.fixtures.demo import vae_state_dict
from support.new_workflow_host import TOON
from support.tiny_host import tiny_checkpoint


@pytest.fixture
def loads(monkeypatch) -> list[tuple[str, bool]]:
    """(network class, ``assign``) of every ``load_state_dict`` call."""
    seen: list[tuple[str, bool]] = []
    original = torch.nn.Module.load_state_dict

    def recording(self, state_dict, strict=True, assign=False):
        seen.append((type(self).__name__, assign))
        return original(self, state_dict, strict=strict, assign=assign)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", recording)
    return seen


def _load_all(comfy_host) -> dict[str, Any]:
    """The UNet and ToonCrafter VAE through the pack's loaders; a VAE through the host's own (``comfy.sd.VAE``)."""
    import comfy.sd

    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    tooncrafter = comfy_host.import_pack_module("nodes.tooncrafter")
    ckpt = tiny_checkpoint("512")
    return {
        "DynamiCrafterNet": host_model.model_from_checkpoint(ckpt, "default"),
        "AutoencoderKL": comfy.sd.VAE(sd=vae_state_dict(), config=host_model._vae_config(vae_state_dict())).patcher,
        "ToonCrafterVAE": tooncrafter.tooncrafter_vae_from_state_dict(
            TOON.tiny_tooncrafter_vae_state_dict(), "t"
        ).patcher,
    }


@pytest.mark.parametrize("streaming", [True, False], ids=["dynamic-vram", "plain"])
def test_pack_models_get_the_hosts_patcher_and_load_options(comfy_host, monkeypatch, loads, streaming):
    import comfy.model_patcher

    class StreamingPatcher(comfy.model_patcher.ModelPatcher):
        """What ``ModelPatcherDynamic`` is to the loaders: a patcher that streams weights."""

        def is_dynamic(self) -> bool:
            return True

    if streaming and not hasattr(comfy.model_patcher, "CoreModelPatcher"):
        pytest.skip("this host (before 0.33.0) has no dynamic VRAM: its loaders all build ModelPatcher")
    core = StreamingPatcher if streaming else comfy.model_patcher.ModelPatcher
    monkeypatch.setattr(comfy.model_patcher, "CoreModelPatcher", core, raising=False)
    patchers = _load_all(comfy_host)

    assert {name: type(p) for name, p in patchers.items()} == dict.fromkeys(patchers, core)
    assigned = {name: assign for name, assign in loads if name in patchers}
    assert assigned == dict.fromkeys(patchers, streaming)
