"""Every number that describes a released DynamiCrafter variant, in frozen dataclasses.

The network structure (:class:`UNetConfig`, :class:`ResamplerConfig`) is the same for all released
variants except the learnable image-attention scale of 256; what really differs between variants is
how they are sampled and conditioned (:class:`VariantConfig`). Code elsewhere reads these fields and
never branches on a variant's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

Prediction = Literal["eps", "v"]
Spacing = Literal["uniform", "uniform_trailing"]

TEXT_TOKENS = 77
"""The UNet's cross-attention splits its context after this many text tokens."""
IMAGE_TOKENS_PER_FRAME = 16
"""The Resampler's queries per frame; the UNet gives frame i the tokens [16 i, 16 i + 16)."""


@dataclass(frozen=True)
class UNetConfig:
    """Constructor arguments of the video UNet (the released values are the defaults)."""

    in_channels: int = 8
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    context_dim: int = 1024
    temporal_length: int = 16
    image_cross_attention_scale_learnable: bool = False
    default_fs: int = 24
    init_attn_heads: int = 8
    camera: str | None = None
    """The camera-control method whose layers the file carries (``dynamicrafter.camera.layers.METHODS``), or None."""

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4


@dataclass(frozen=True)
class ResamplerConfig:
    """The image-token projector: CLIP vision tokens -> ``num_queries`` tokens per frame."""

    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 16
    embedding_dim: int = 1280
    output_dim: int = 1024
    ff_mult: int = 4
    video_length: int = 16


@dataclass(frozen=True)
class ScheduleConfig:
    """The DDPM noise schedule the variant was trained with."""

    timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012
    zero_terminal_snr: bool = True
    prediction: Prediction = "v"
    dynamic_rescale: bool = True
    base_scale: float = 0.7
    turning_step: int = 400


@dataclass(frozen=True)
class SamplingDefaults:
    """What the original scripts pass to the DDIM sampler for this variant."""

    steps: int = 50
    eta: float = 1.0
    cfg: float = 7.5
    spacing: Spacing = "uniform_trailing"
    guidance_rescale: float = 0.7


@dataclass(frozen=True)
class VariantConfig:
    """One released checkpoint: structure, schedule, sampling defaults and conditioning."""

    name: str
    height: int
    width: int
    fs_meaning: Literal["frame_stride", "fps"]
    default_fs: int
    fs_range: tuple[int, int]
    unet: UNetConfig
    schedule: ScheduleConfig
    sampling: SamplingDefaults
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    frames: int = 16
    save_fps: int = 8
    interpolation: bool = False
    hf_repo: str = ""
    """The authors' Hugging Face repository, whose ``model.ckpt`` is this variant."""
    file_name: str = ""
    """The name the README, the workflows and the download node give that ``model.ckpt``."""

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.height // 8, self.width // 8


_V_SCHEDULE = ScheduleConfig()


def _variant(
    name: str,
    height: int,
    width: int,
    fs_meaning: Literal["frame_stride", "fps"],
    default_fs: int,
    fs_range: tuple[int, int],
    hf_repo: str,
    unet_default_fs: int | None = None,
    **fields,
) -> VariantConfig:
    """One table row; the UNet's own fs fallback is the scripts' fs unless the original config says otherwise."""
    learnable = fields.pop("image_cross_attention_scale_learnable", False)
    unet = UNetConfig(
        image_cross_attention_scale_learnable=learnable,
        default_fs=default_fs if unet_default_fs is None else unet_default_fs,
    )
    fields.setdefault("schedule", _V_SCHEDULE)
    fields.setdefault("sampling", SamplingDefaults())
    return VariantConfig(
        name=name,
        height=height,
        width=width,
        fs_meaning=fs_meaning,
        default_fs=default_fs,
        fs_range=fs_range,
        unet=unet,
        hf_repo=hf_repo,
        file_name=f"dynamicrafter_{name}_v1.ckpt",
        **fields,
    )


VARIANTS: dict[str, VariantConfig] = {
    "256": _variant(
        "256",
        256,
        256,
        "frame_stride",
        3,
        (1, 6),
        "Doubiiu/DynamiCrafter",
        image_cross_attention_scale_learnable=True,
        schedule=ScheduleConfig(zero_terminal_snr=False, prediction="eps", dynamic_rescale=False),
        sampling=SamplingDefaults(spacing="uniform", guidance_rescale=0.0),
    ),
    "512": _variant("512", 320, 512, "fps", 24, (15, 30), "Doubiiu/DynamiCrafter_512"),
    "1024": _variant(
        "1024", 576, 1024, "fps", 10, (5, 20), "Doubiiu/DynamiCrafter_1024", schedule=ScheduleConfig(base_scale=0.3)
    ),
    # The original interp config builds its UNet with default_fs=24; its scripts always pass fs=5.
    "512_interp": _variant(
        "512_interp",
        320,
        512,
        "fps",
        5,
        (5, 30),
        "Doubiiu/DynamiCrafter_512_Interp",
        unet_default_fs=24,
        interpolation=True,
    ),
}
"""The four released variants, keyed by the name the original repository uses."""


TOONCRAFTER = dataclasses.replace(
    VARIANTS["512_interp"],
    name="tooncrafter",
    default_fs=10,
    hf_repo="Doubiiu/ToonCrafter",
    file_name="tooncrafter_512_interp.ckpt",
)
"""ToonCrafter: the 512_interp UNet, schedule and sampling; fs 10, as its scripts/run.sh and gradio app use."""
SKETCH_ENCODER_FILE = "sketch_encoder.ckpt"
"""ToonCrafter's sketch encoder under its released name, in ``TOONCRAFTER.hf_repo``."""
SKETCH_ENCODER_FP16_FILE = "sketch_encoder-fp16.safetensors"
"""Kijai's fp16 copy of the sketch encoder (the same network)."""
ORIGINAL_SAMPLING = SamplingDefaults()
"""The original scripts' DDIM settings, every variant's defaults (steps, eta, cfg, spacing, guidance rescale)."""


def get_variant(name: str) -> VariantConfig:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown DynamiCrafter variant {name!r}; choose one of {sorted(VARIANTS)}") from None
