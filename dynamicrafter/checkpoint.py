"""Read DynamiCrafter checkpoint files, split them into their parts and tell what they are.

Handles the original Lightning ``.ckpt`` (a dict with ``state_dict``), Kijai's full bf16
``.safetensors`` and the ``*_fp16_pruned`` files (UNet + VAE + Resampler). The network config comes
from the tensors' shapes, never from the file name; the name only picks among variants that share
shapes (512, 1024, 512_interp) when the file carries no ``scale_arr``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import VARIANTS, ResamplerConfig, UNetConfig, VariantConfig
from .detect import resampler_config_from_state_dict, unet_config_from_state_dict
from .file_kind import DESCRIPTIONS, FileKind, expected_kind, not_a_model, pickle_code_globals, sniff

log = logging.getLogger(__name__)

PART_PREFIXES: dict[str, str] = {
    "unet": "model.diffusion_model.",
    "vae": "first_stage_model.",
    "text_encoder": "cond_stage_model.",
    "clip_vision": "embedder.",
    "resampler": "image_proj_model.",
}
"""Key prefix of each part inside an original checkpoint."""
CAMERA_ENCODER_PREFIX = "pose_encoder."
"""The camera pose encoder of the CamI2V reference's CameraCtrl files (top level); the UNet holds it."""

SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "scale_arr",
)

UNET_KEY_RENAMES = {"framestride_embed.": "fps_embedding."}
"""Checkpoint name -> module name (the 256 file stores the fs MLP as ``framestride_embed``)."""

WHERE_TO_GET = {
    "text_encoder": "an OpenCLIP ViT-H/14 text encoder (the SD 2.x CLIP): load it with the stock 'Load CLIP' "
    "node, type 'stable_diffusion' (e.g. stable-diffusion-2-1-clip.safetensors in models/text_encoders)",
    "clip_vision": "'CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors' in models/clip_vision, loaded with the stock "
    "'Load CLIP Vision' node",
    "vae": "the SD 1.x/2.x VAE (e.g. 'vae-ft-mse-840000-ema-pruned.safetensors' in models/vae), loaded with "
    "the stock 'Load VAE' node",
    "unet": "a DynamiCrafter checkpoint: the original model.ckpt, or Kijai's *_bf16 / *_fp16_pruned .safetensors",
    "resampler": "a DynamiCrafter checkpoint (every released file carries the image_proj_model Resampler)",
}


class CheckpointError(ValueError):
    """A file could not be used as a DynamiCrafter checkpoint; the message names the file."""

    __module__ = "dynamicrafter"  # as ComfyUI shows the type: never the install path

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        super().__init__(f"{Path(path).name}: {problem}")


class MissingPartError(CheckpointError):
    """The file is a DynamiCrafter checkpoint but lacks a part (e.g. a pruned file has no CLIP)."""

    __module__ = "dynamicrafter"  # as ComfyUI shows the type: never the install path

    def __init__(self, path: str | os.PathLike, part: str, advice: str | None = None):
        self.part = part
        advice = advice or f"Use {WHERE_TO_GET[part]}."
        super().__init__(path, f"this file has no {part.replace('_', ' ')} weights. {advice}")


_PICKLE_SCAN_BYTES = 16 << 20
"""How much of a refused pickle is read to name the code it asks for (a weights index is far smaller)."""

SafetensorsReader = Callable[[str], Mapping[str, torch.Tensor]]
"""Reads every tensor of a ``.safetensors`` file (a host passes its own, which honours its mmap flags)."""


def _read_ckpt(path: Path, kind: FileKind, mmap: bool) -> Mapping[str, torch.Tensor]:
    try:
        obj = _torch_load(path, kind, mmap)
    except pickle.UnpicklingError as e:
        code = _code_in_pickle(path, kind)
        if "unsupported global" not in str(e).lower() and not code:  # a damaged pickle, not a refused object
            raise CheckpointError(
                path, f"{DESCRIPTIONS[kind]}, but corrupt (its pickled index cannot be read); download it again."
            ) from None
        raise CheckpointError(
            path,
            "refused to load: the pickle asks to run code or build objects that are not "
            "plain tensors, which a weights file never needs. Use a .safetensors file, "
            f"or the original model.ckpt from Hugging Face. (detail: {', '.join(code[:3]) or _blocked(e)})",
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, IndexError, ValueError, KeyError, OSError, struct.error) as e:
        raise CheckpointError(
            path,
            f"{DESCRIPTIONS[kind]}, but truncated or corrupt ({type(e).__name__}: {str(e)[:200]}); download it again.",
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("module"), Mapping):  # DeepSpeed layout
        obj = {k.removeprefix("_forward_module."): v for k, v in obj["module"].items()}
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, "the file holds no state dict of tensors; it is not a model checkpoint.")
    return obj


def _torch_load(path: Path, kind: FileKind, mmap: bool) -> object:
    """``torch.load`` (weights only): a zip mapped lazily (unless ``mmap`` is off: a host's ``--disable-mmap``);
    the legacy format, or a zip named *.safetensors (which torch would hand to safetensors by its name), read
    from an open file."""
    if kind == "torch_zip" and path.suffix.lower() != ".safetensors":
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    with open(path, "rb") as handle:
        return torch.load(handle, map_location="cpu", weights_only=True)


def _code_in_pickle(path: Path, kind: FileKind) -> list[str]:
    """The code objects a legacy or raw pickle names (read, never run); a zip's pickle is ``data.pkl`` inside."""
    try:
        if kind == "torch_zip":
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name)[:_PICKLE_SCAN_BYTES] if name else b""
        else:
            with open(path, "rb") as handle:
                data = handle.read(_PICKLE_SCAN_BYTES)
    except (OSError, zipfile.BadZipFile, ValueError):
        return []
    return pickle_code_globals(data)


def _blocked(error: pickle.UnpicklingError) -> str:
    """The line of torch's message that names the refused object."""
    lines = [line.strip() for line in str(error).splitlines() if "global" in line.lower()]
    return (lines or [str(error).splitlines()[0]])[0][:200]


def _read_safetensors(path: Path, reader: SafetensorsReader | None) -> Mapping[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return (reader or load_file)(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            path, f"{DESCRIPTIONS['safetensors']}, but truncated or corrupt ({str(e)[:200]}); download it again."
        ) from None


def read_state_dict(
    path: str | os.PathLike, safetensors_reader: SafetensorsReader | None = None, mmap: bool = True
) -> Mapping[str, torch.Tensor]:
    """Load every tensor of a safetensors or PyTorch file (pickles: weights only), told apart by their first
    bytes, not by the extension; a file that is no model at all gets an error that says what it is.

    ``safetensors_reader``: a host's reader for safetensors files; ``mmap=False`` reads pickles into memory
    instead of mapping them (a host's ``--disable-mmap``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"no such file: {path}")
    kind = sniff(path)
    if kind not in DESCRIPTIONS:
        raise CheckpointError(path, not_a_model(path, kind))
    expected = expected_kind(path)
    if kind != expected and {kind, expected} != {"torch_zip", "torch_pickle"}:
        log.warning(
            "%s is really %s, whatever its extension says; reading it as one (rename it to %s)",
            path.name,
            DESCRIPTIONS[kind],
            path.with_suffix(".safetensors" if kind == "safetensors" else ".ckpt").name,
        )
    if kind == "safetensors":
        return _read_safetensors(path, safetensors_reader)
    return _read_ckpt(path, kind, mmap)


def split_parts(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Group keys by part (prefix stripped) and collect the schedule buffers; UNet keys are renamed."""
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in PART_PREFIXES}
    buffers: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        for name, prefix in PART_PREFIXES.items():
            if key.startswith(prefix):
                parts[name][key[len(prefix) :]] = tensor
                break
        else:
            if key in SCHEDULE_BUFFERS:
                buffers[key] = tensor
            elif key.startswith(CAMERA_ENCODER_PREFIX):  # CameraCtrl's encoder: a part of the UNet here
                parts["unet"][key] = tensor
    parts["unet"] = {_rename_unet_key(k): v for k, v in parts["unet"].items()}
    return {k: v for k, v in parts.items() if v}, buffers


def _rename_unet_key(key: str) -> str:
    for old, new in UNET_KEY_RENAMES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def describe_foreign(sd: Mapping[str, torch.Tensor]) -> str:
    """A plain-words guess of what a non-DynamiCrafter state dict is."""
    keys = list(sd)
    has = lambda fragment: any(fragment in k for k in keys)  # noqa: E731
    if not keys:
        return "it holds no tensors"
    if has("lora_") or has(".lora."):
        return "it looks like a LoRA, not a full model"
    if has("conditioner.embedders"):
        return "it looks like an SDXL or SVD checkpoint (it has 'conditioner.embedders')"
    if "model.diffusion_model.input_blocks.0.0.weight" in sd:
        in_ch = sd["model.diffusion_model.input_blocks.0.0.weight"].shape[1]
        if has("time_stack"):
            return "it looks like a Stable Video Diffusion checkpoint"
        if in_ch in (4, 9):
            return (
                f"it looks like a Stable Diffusion 1.x/2.x image checkpoint ({in_ch}-channel UNet without "
                "temporal layers); load it with the stock 'Load Checkpoint' node"
            )
        return f"it is a UNet checkpoint without DynamiCrafter's temporal layers ({in_ch} input channels)"
    if has("double_blocks") or has("joint_blocks"):
        return "it looks like a Flux/SD3-family model"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "it looks like a standalone VAE; put it in models/vae and use the stock 'Load VAE' node"
    if has("text_model.") or has("token_embedding"):
        return "it looks like a CLIP text encoder; use the stock 'Load CLIP' node"
    if has("vision_model.") or has("visual."):
        return "it looks like a CLIP vision model; use the stock 'Load CLIP Vision' node"
    return f"its keys do not match any known model (first key: {keys[0]!r})"


@dataclass
class DynamiCrafterCheckpoint:
    """A checkpoint split into parts, with the configs derived from its shapes."""

    path: str
    variant: VariantConfig
    unet_config: UNetConfig
    resampler_config: ResamplerConfig
    parts: dict[str, dict[str, torch.Tensor]]
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    def require(self, part: str) -> dict[str, torch.Tensor]:
        """The tensors of ``part`` (keys without the part's prefix), or a MissingPartError."""
        if part not in self.parts:
            raise MissingPartError(self.path, part)
        return self.parts[part]

    def has(self, part: str) -> bool:
        return part in self.parts


def _file_base_scale(buffers: Mapping[str, torch.Tensor]) -> float | None:
    """The dynamic-rescale base scale stored in the file's ``scale_arr`` (its constant tail), if any.

    Rounded to two decimals: bf16/fp16 files store 0.3 as 0.30078 (released values are 0.7 and 0.3).
    """
    scale_arr = buffers.get("scale_arr")
    if scale_arr is None or scale_arr.is_meta:
        return None
    return round(float(scale_arr[-1]), 2)


def _choose_variant(
    path: str, unet_config: UNetConfig, buffers: Mapping[str, torch.Tensor], requested: str | None
) -> VariantConfig:
    """Pick the variant: shapes decide eps/256 vs v; then the user, the file name, the file's scale_arr."""
    file_base = _file_base_scale(buffers)
    if unet_config.image_cross_attention_scale_learnable:
        if requested not in (None, "auto", "256"):
            raise CheckpointError(
                path,
                f"this is the 256 model (eps prediction, learnable image-attention scale), "
                f"but variant {requested!r} was chosen; pick '256' or 'auto'.",
            )
        return VARIANTS["256"]
    if requested == "256":
        raise CheckpointError(
            path,
            "this is a 512/1024/interp model (v prediction), but variant '256' was "
            "chosen; pick 'auto', '512', '1024' or '512_interp'.",
        )
    if requested not in (None, "auto"):
        variant = VARIANTS[requested]
    else:
        name = Path(path).name.lower()
        if "interp" in name or "tooncrafter" in name:
            variant = VARIANTS["512_interp"]
        elif "1024" in name or file_base == VARIANTS["1024"].schedule.base_scale:
            variant = VARIANTS["1024"]
        else:
            variant = VARIANTS["512"]
    if file_base is not None and file_base != variant.schedule.base_scale:
        log.info(
            "%s: dynamic-rescale base scale %.3g from the file's scale_arr (variant %s default %.3g)",
            Path(path).name,
            file_base,
            variant.name,
            variant.schedule.base_scale,
        )
        variant = dataclasses.replace(variant, schedule=dataclasses.replace(variant.schedule, base_scale=file_base))
    return variant


def checkpoint_from_state_dict(
    path: str | os.PathLike, sd: Mapping[str, torch.Tensor], variant: str | None = None
) -> DynamiCrafterCheckpoint:
    """Split an already-read state dict and derive its configs (``variant``: None/'auto' or a name)."""
    path = str(path)
    if variant not in (None, "auto") and variant not in VARIANTS:
        raise CheckpointError(path, f"unknown variant {variant!r}; choose 'auto' or one of {sorted(VARIANTS)}")
    parts, buffers = split_parts(sd)
    unet = parts.get("unet", {})
    if "init_attn.0.proj_in.weight" not in unet or "input_blocks.1.0.temopral_conv.conv1.0.weight" not in unet:
        if unet or not parts.get("resampler"):
            raise CheckpointError(path, f"not a DynamiCrafter checkpoint: {describe_foreign(sd)}.")
        raise MissingPartError(path, "unet")
    if "resampler" not in parts:
        raise MissingPartError(path, "resampler")
    try:
        unet_config = unet_config_from_state_dict(unet)
        resampler_config = resampler_config_from_state_dict(parts["resampler"])
    except KeyError as e:
        raise CheckpointError(
            path,
            f"the DynamiCrafter weights are incomplete: missing key {e.args[0]!r}; "
            "the file may be damaged, download it again.",
        ) from None
    chosen = _choose_variant(path, unet_config, buffers, variant)
    unet_config = dataclasses.replace(unet_config, default_fs=chosen.unet.default_fs)
    return DynamiCrafterCheckpoint(path, chosen, unet_config, resampler_config, parts, buffers)


def load_checkpoint(
    path: str | os.PathLike,
    variant: str | None = None,
    safetensors_reader: SafetensorsReader | None = None,
    mmap: bool = True,
) -> DynamiCrafterCheckpoint:
    """Read a DynamiCrafter checkpoint file and split it; errors name the file and what is wrong."""
    return checkpoint_from_state_dict(path, read_state_dict(path, safetensors_reader, mmap), variant)
