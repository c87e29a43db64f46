"""LoRA adapters through the host's ``comfy.weight_adapter``, in the host's trained-LoRA file format.

The adapters are the host's own ``LoraDiff`` training modules (``LoRAAdapter.create_train`` for a new LoRA,
``LoRAAdapter.load(...).to_train()`` to resume one), wrapped around each target weight with
``ModelPatcher.add_weight_wrapper`` as the host's Train LoRA node does. Their parameters, named
``diffusion_model.<layer>.lora_up.weight`` / ``.lora_down.weight`` / ``.alpha``, are the ``LORA_MODEL`` the
stock Save LoRA, Load LoRA Model and (from the loras folder) LoraLoaderModelOnly read.
"""

from __future__ import annotations

import logging
import os
import re

import comfy.utils
import folder_paths
import safetensors.torch
import torch
from comfy.weight_adapter import LoRAAdapter

from ...dynamicrafter.training.targets import target_modules

log = logging.getLogger(__name__)

HOST_PREFIX = "diffusion_model."
NO_LORA = "[None]"
_STEPS = re.compile(r"_(\d+)_steps_")


def release_inference_tensors(network: torch.nn.Module) -> int:
    """Swap the parameters and buffers the host made under ``torch.inference_mode`` (a model loaded by a prompt)
    for normal copies: autograd cannot save inference tensors for the backward pass. Returns how many."""
    swapped = 0
    for module in network.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.is_inference():
                module._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=False)
                swapped += 1
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_inference():
                module._buffers[name] = buffer.clone()
                swapped += 1
    return swapped


def create_adapters(
    patcher, chosen: set[str], rank: int, alpha: float, existing: dict[str, torch.Tensor], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Wrap every target weight of ``patcher``'s network in a trainable LoRA; returns its parameters by name.

    A layer found in ``existing`` (a LoRA being resumed) continues from it, with its own rank and alpha. Must run
    outside ``torch.inference_mode`` (see :func:`release_inference_tensors`).
    """
    params: dict[str, torch.Tensor] = {}
    network = patcher.model.diffusion_model
    if release_inference_tensors(network):
        log.info("DynamiCrafter training: the model's weights were inference tensors; using normal copies")
    for name, module in target_modules(network, chosen):
        if not hasattr(module, "weight_function"):
            continue  # not one of the host's operations: the host cannot wrap its weight
        layer = HOST_PREFIX + name
        stored_alpha = float(existing.get(f"{layer}.alpha", alpha))
        loaded = LoRAAdapter.load(layer, existing, stored_alpha, None) if existing else None
        if loaded is not None:
            adapter = loaded.to_train()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
                adapter = LoRAAdapter.create_train(module.weight, rank=rank, alpha=alpha)
        adapter = adapter.to(device=module.weight.device, dtype=torch.float32).train().requires_grad_(True)
        adapter.alpha.requires_grad_(False)
        patcher.add_weight_wrapper(f"{layer}.weight", adapter)
        for pname, param in adapter.named_parameters():
            params[f"{layer}.{pname}"] = param
    if not params:
        raise ValueError("no layer of this model can take an adapter: is it a DynamiCrafter model?")
    return params


def trainable(params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [p for p in params.values() if p.requires_grad]


def lora_state(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``LORA_MODEL``: detached CPU copies, as the stock Save LoRA writes them."""
    return {k: v.detach().to("cpu", torch.float32).clone().contiguous() for k, v in params.items()}


def steps_in_name(name: str) -> int:
    """The step count in a trained LoRA's file name (``..._<n>_steps_<counter>_.safetensors``), else 0."""
    found = _STEPS.findall(os.path.basename(name))
    return int(found[-1]) if found else 0


def load_existing(name: str) -> tuple[dict[str, torch.Tensor], int]:
    """A LoRA from the loras folder to resume, and the steps it was trained for."""
    if name == NO_LORA:
        return {}, 0
    path = folder_paths.get_full_path_or_raise("loras", name)
    return comfy.utils.load_torch_file(path, safe_load=True), steps_in_name(name)


def save_to_loras(lora: dict[str, torch.Tensor], prefix: str, steps: int) -> str:
    """Write ``lora`` into the first loras folder as ``<prefix>_<steps>_steps_<counter>_.safetensors`` (Save
    LoRA's naming); returns its name relative to that folder. The host refuses a prefix leading outside it."""
    folder = folder_paths.get_folder_paths("loras")[0]
    full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, folder)
    os.makedirs(full_folder, exist_ok=True)
    file_name = f"{filename}_{steps}_steps_{counter:05}_.safetensors"
    path = os.path.join(full_folder, file_name)
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) != os.path.abspath(folder):
        raise ValueError(f"the LoRA name {prefix!r} leads outside the loras folder")
    safetensors.torch.save_file(lora, path, metadata={"steps": str(steps)})
    log.info("DynamiCrafter LoRA saved: %s", path)
    return os.path.join(subfolder, file_name) if subfolder else file_name
