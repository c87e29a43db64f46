"""What the Download Model node offers: each checkpoint's place on the Hugging Face hub and its name on disk."""

from __future__ import annotations

from dataclasses import dataclass

from ...dynamicrafter.config import VARIANTS

REVISION = "main"
KIJAI_REPO = "Kijai/DynamiCrafter_pruned"


@dataclass(frozen=True)
class HubFile:
    """One downloadable checkpoint: where it is on the hub and the name it gets on disk."""

    label: str
    repo_id: str
    filename: str
    local_name: str
    note: str = ""


def _original(variant: str) -> HubFile:
    return HubFile(
        label=f"{variant} (original, full, 10.4 GB)",
        repo_id=VARIANTS[variant].hf_repo,
        filename="model.ckpt",
        local_name=VARIANTS[variant].file_name,
        note="fp32 Lightning checkpoint with both CLIP encoders and the VAE",
    )


def _kijai(label: str, filename: str, note: str) -> HubFile:
    return HubFile(label=label, repo_id=KIJAI_REPO, filename=filename, local_name=filename, note=note)


_PRUNED_NOTE = "UNet, VAE and Resampler only: load CLIP-H text and CLIP-H vision from the stock ComfyUI files"


def _cil_entries() -> tuple[HubFile, ...]:
    """Kijai's pruned copies of the CIL ("no watermark") fine-tunes (thu-ml/cond-image-leakage), under the names
    his wrapper downloads them by."""
    return tuple(
        _kijai(f"{res} CIL no-watermark (Kijai, fp16, pruned: no CLIP, 3.1 GB)", filename, _PRUNED_NOTE)
        for res, filename in (
            ("512", "dynamicrafter-CIL-512-no-watermark-fixed-pruned-fp16.safetensors"),
            ("1024", "dynamicrafter-CIL-1024-no-watermark-pruned-fp16.safetensors"),
        )
    )


CATALOGUE: dict[str, HubFile] = {
    entry.label: entry
    for entry in (
        _original("512"),
        _original("1024"),
        _original("256"),
        _original("512_interp"),
        _kijai(
            "1024 (Kijai, bf16, full, 5.2 GB)",
            "dynamicrafter_1024_v1_bf16.safetensors",
            "the original 1024 weights in bf16, with both CLIP encoders",
        ),
        _kijai("512 (Kijai, fp16, pruned: no CLIP, 3.1 GB)", "dynamicrafter_512_fp16_pruned.safetensors", _PRUNED_NOTE),
        _kijai(
            "1024 (Kijai, fp16, pruned: no CLIP, 3.1 GB)", "dynamicrafter_1024_fp16_pruned.safetensors", _PRUNED_NOTE
        ),
        _kijai(
            "512_interp (Kijai, fp16, pruned: no CLIP, 3.1 GB)",
            "dynamicrafter_512_interp_fp16_pruned.safetensors",
            _PRUNED_NOTE,
        ),
        *_cil_entries(),
    )
}
"""Combo label -> file. Labels are stored in workflows: never rename one once released."""
