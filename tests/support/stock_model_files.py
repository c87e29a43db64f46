"""Small files for the stock model nodes the LoRA and ControlNet workflows use (under the names the shipped
workflows give them), and a checkpoint they fit.

- a LoRA (kohya ``lora_up`` / ``lora_down`` + ``alpha``) over every cross-attention key projection of a
  DynamiCrafter state dict, so it fits whatever UNet that state dict holds (the tiny host one);
- an SD 2.1-layout ControlNet (``sd21_layout.controlnet_state_dict``);
- a complete DynamiCrafter file it fits: the host detects a ControlNet as SD 2.x only at SD 2.x's widths
  (320 channels, 1024-wide text context), so this file's UNet is ``sd21_layout``'s (320 channels, one level)
  and its text tower is 1024 wide (three blocks, as the host files), its other parts tiny.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.fixtures.demo import DemoSizes, demo_state_dict
from support.comfy_server import load_api_workflow, workflow_names
from support.host_checkpoints import HOST_SIZES
from support.sd21_layout import SD21_LAYOUT_UNET, controlnet_state_dict

LORA_TARGET = re.compile(r"model\.diffusion_model\.(.+\.attn2\.to_k)\.weight")
SD21_LAYOUT_TEXT_WIDTH = 1024
SD21_LAYOUT_SIZES = DemoSizes(
    unet=SD21_LAYOUT_UNET,
    resampler=replace(HOST_SIZES.resampler, output_dim=SD21_LAYOUT_TEXT_WIDTH),
    text={**HOST_SIZES.text, "width": SD21_LAYOUT_TEXT_WIDTH, "embed_dim": SD21_LAYOUT_TEXT_WIDTH},
    vision={**HOST_SIZES.vision, "embed_dim": SD21_LAYOUT_TEXT_WIDTH},
)


def lora_state_dict(sd: dict[str, torch.Tensor], rank: int = 2, seed: int = 13) -> dict[str, torch.Tensor]:
    """A random kohya-style LoRA for every ``attn2.to_k`` weight of the UNet in ``sd`` (original key layout)."""
    generator = torch.Generator().manual_seed(seed)
    lora: dict[str, torch.Tensor] = {}
    for key, weight in sd.items():
        match = LORA_TARGET.fullmatch(key)
        if match is None:
            continue
        stem = "lora_unet_" + match.group(1).replace(".", "_")
        lora[f"{stem}.lora_up.weight"] = torch.randn(weight.shape[0], rank, generator=generator) * 0.3
        lora[f"{stem}.lora_down.weight"] = torch.randn(rank, weight.shape[1], generator=generator) * 0.3
        lora[f"{stem}.alpha"] = torch.tensor(float(rank))
    if not lora:
        raise ValueError("the state dict has no model.diffusion_model.*.attn2.to_k.weight for the LoRA")
    return lora


def write_lora(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    save_file(lora_state_dict(sd), str(path))
    return path


def write_controlnet(path: Path) -> Path:
    """An SD 2.1-layout ControlNet; under a sketch encoder's name, ToonCrafter's sketch encoder (1-channel hints)
    in the file's own format (``.ckpt``: a pickled ``state_dict``, loaded safely by the host)."""
    if "sketch_encoder" not in path.name:
        save_file({k: v.contiguous() for k, v in controlnet_state_dict().items()}, str(path))
    elif path.suffix == ".ckpt":
        torch.save({"state_dict": controlnet_state_dict(hint_channels=1, prefix="")}, path)
    else:
        sd = controlnet_state_dict(hint_channels=1, prefix="")
        save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    return path


STOCK_MODEL_INPUTS = {
    "ControlNetLoader": ("control_net_name", "controlnet"),
    "LoraLoaderModelOnly": ("lora_name", "loras"),
}
"""Stock loaders the workflows use: the input naming the file, and the model folder it is read from."""


def stock_model_files() -> dict[str, set[str]]:
    """Model folder -> the files the shipped API workflows' stock ControlNet and LoRA loaders ask for."""
    files: dict[str, set[str]] = {folder: set() for _, folder in STOCK_MODEL_INPUTS.values()}
    for name in workflow_names():
        for node in load_api_workflow(name).values():
            if node["class_type"] in STOCK_MODEL_INPUTS:
                widget, folder = STOCK_MODEL_INPUTS[node["class_type"]]
                files[folder].add(node["inputs"][widget])
    return files


def write_workflow_model_files(models: Path, unet: dict[str, torch.Tensor]) -> list[str]:
    """The ControlNet and LoRA files the shipped workflows name, in ``models/<folder>`` (LoRAs for the UNet
    in ``unet``, original key layout); returns the folders."""
    writers = {"controlnet": write_controlnet, "loras": lambda path: write_lora(path, unet)}
    for folder, file_names in stock_model_files().items():
        (models / folder).mkdir(exist_ok=True)
        for file_name in file_names:
            writers[folder](models / folder / file_name)
    return list(writers)


def write_sd21_layout_tooncrafter(path: Path, tooncrafter_vae: dict[str, torch.Tensor]) -> Path:
    """A ToonCrafter file (512_interp UNet, Resampler, text and vision towers, ``tooncrafter_vae``) that the
    SD 2.1-layout ControlNets and sketch encoders above fit, fp16."""
    vae = PART_PREFIXES["vae"]
    sd = {k: v for k, v in demo_state_dict("512_interp", sizes=SD21_LAYOUT_SIZES).items() if not k.startswith(vae)}
    sd.update({vae + k: v for k, v in tooncrafter_vae.items()})
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    return path


def write_sd21_layout_checkpoint(path: Path) -> Path:
    """A full 512 file (UNet, Resampler, VAE, text and vision towers) that SD 2.1-layout ControlNets fit, fp16."""
    sd = demo_state_dict("512", sizes=SD21_LAYOUT_SIZES)
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    return path
