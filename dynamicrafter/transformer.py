"""Spatial and temporal transformers of the DynamiCrafter UNet (original ``lvdm/modules/attention.py``).

Layer and attribute names follow the original checkpoint keys (``to_k_ip``, ``ff.net.0.proj``,
``to_out.0``, ...), so a state dict loads without renaming. Every block takes the host's
``transformer_options`` and honours its attention patch points (see :mod:`.patches`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import freenoise
from .attention import AttentionFn, sdpa_attention
from .camera.hook import CAMERA_OPTION
from .config import TEXT_TOKENS
from .frames import unfold_frames
from .patches import Options, attention_replacement, extra_options, patches, without_patches


def _expand_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat each sample of ``t`` so that it matches ``batch`` rows (frames of one video share it)."""
    if t.shape[0] == batch:
        return t
    return t.repeat_interleave(batch // t.shape[0], dim=0)


class CrossAttention(nn.Module):
    """Multi-head attention; with ``image_context`` it is the dual text/image cross-attention.

    The image part has its own keys/values (``to_k_ip``/``to_v_ip``) and its own softmax; its result is
    added with weight ``lambda`` (1, or ``tanh(alpha) + 1`` when the scale is learnable, as in 256).
    Context tensors may have fewer rows than the queries (one per video instead of one per frame):
    keys and values are then projected once and shared by the frames. A host ``replace`` function
    (``patches_replace``) takes the place of the text/self attention; the image part stays.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None,
        heads: int,
        dim_head: int,
        image_cross_attention: bool = False,
        scale_learnable: bool = False,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.dim_head = dim_head
        self.attention = attention
        self.to_q = operations.Linear(query_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_k = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_v = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_out = nn.Sequential(operations.Linear(inner, query_dim, dtype=dtype, device=device))
        self.image_cross_attention = image_cross_attention
        if image_cross_attention:
            self.to_k_ip = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
            self.to_v_ip = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
            if scale_learnable:
                self.alpha = nn.Parameter(torch.zeros((), dtype=dtype, device=device))

    def _attend(
        self,
        q: torch.Tensor,
        context: torch.Tensor,
        value: torch.Tensor,
        to_k: nn.Module,
        to_v: nn.Module,
        options: Options,
        replace: Callable | None = None,
        extra: Options | None = None,
    ) -> torch.Tensor:
        k = _expand_batch(to_k(context), q.shape[0])
        v = _expand_batch(to_v(value), q.shape[0])
        if replace is not None:
            return replace(q, k, v, extra)
        windows = options.get(freenoise.TEMPORAL_WINDOWS)
        if windows is not None:
            return freenoise.windowed_attention(q, k, v, self.heads, self.attention, windows, options)
        return self.attention(q, k, v, self.heads, transformer_options=options)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        options: Options | None = None,
        replace: Callable | None = None,
        extra: Options | None = None,
    ) -> torch.Tensor:
        options = {} if options is None else options
        q = self.to_q(x)
        context = x if context is None else context
        out = self._attend(
            q, context, context if value is None else value, self.to_k, self.to_v, options, replace, extra
        )
        if self.image_cross_attention and image_context is not None and image_context.shape[1] > 0:
            windows = options.get(freenoise.WINDOWS)
            if windows is None:
                out_ip = self._attend(q, image_context, image_context, self.to_k_ip, self.to_v_ip, options)
            else:  # FreeNoise: ``image_context`` holds the tokens of each position in a window
                k_ip, v_ip = self.to_k_ip(image_context), self.to_v_ip(image_context)
                out_ip = freenoise.windowed_image_attention(q, k_ip, v_ip, self.heads, self.attention, windows, options)
            if hasattr(self, "alpha"):
                out_ip = out_ip * (torch.tanh(self.alpha.float()) + 1).to(device=out_ip.device, dtype=out_ip.dtype)
            out = out + out_ip
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.proj = operations.Linear(dim_in, dim_out * 2, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(
            GEGLU(dim, inner, dtype, device, operations),
            nn.Identity(),
            operations.Linear(inner, dim, dtype=dtype, device=device),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm block: self-attention, (dual) cross-attention, GEGLU feed-forward.

    With ``context_dim=None`` the second attention is self-attention as well (temporal blocks). The
    host's ``attn1_patch``/``attn2_patch``, ``attn1``/``attn2`` replacements, ``attn1_output_patch``,
    ``middle_patch`` and ``attn2_output_patch`` run where the host's own transformer block runs them;
    patches see per-frame context rows, like the queries.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None,
        image_cross_attention: bool = False,
        scale_learnable: bool = False,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        kw = dict(attention=attention, dtype=dtype, device=device, operations=operations)
        self.attn1 = CrossAttention(dim, None, heads, dim_head, **kw)
        self.ff = FeedForward(dim, dtype=dtype, device=device, operations=operations)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, image_cross_attention, scale_learnable, **kw)
        self.norm1 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.norm2 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.norm3 = operations.LayerNorm(dim, dtype=dtype, device=device)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
        options: Options | None = None,
    ) -> torch.Tensor:
        options = {} if options is None else options
        extra = extra_options(options, self.attn1.heads, self.attn1.dim_head)
        block_index = options.get("block_index", 0)

        n = self.norm1(x)
        camera = options.get(CAMERA_OPTION)
        if camera is not None:
            n = camera.self_attention_input(self, n)
        self_context = self_value = None
        if patches(options, "attn1_patch"):
            self_context = self_value = n
            for patch in patches(options, "attn1_patch"):
                n, self_context, self_value = patch(n, self_context, self_value, extra)
        n = self.attn1(
            n,
            self_context,
            value=self_value,
            options=options,
            replace=attention_replacement(options, "attn1", block_index),
            extra=extra,
        )
        for patch in patches(options, "attn1_output_patch"):
            n = patch(n, extra)
        x = n + x
        if camera is not None:
            x = camera.after_self_attention(self, x)
        for patch in patches(options, "middle_patch"):
            x = patch(x, extra)

        n = self.norm2(x)
        cross_value = None
        if patches(options, "attn2_patch"):
            context = n if context is None else _expand_batch(context, n.shape[0])
            cross_value = context
            for patch in patches(options, "attn2_patch"):
                n, context, cross_value = patch(n, context, cross_value, extra)
        n = self.attn2(
            n,
            context,
            image_context,
            value=cross_value,
            options=options,
            replace=attention_replacement(options, "attn2", block_index),
            extra=extra,
        )
        for patch in patches(options, "attn2_output_patch"):
            n = patch(n, extra)
        x = n + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame attention over h*w tokens with text/image cross-attention (``use_linear`` layout)."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        context_dim: int,
        scale_learnable: bool = False,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        inner = heads * dim_head
        self.norm = operations.GroupNorm(32, channels, eps=1e-6, affine=True, dtype=dtype, device=device)
        self.proj_in = operations.Linear(channels, inner, dtype=dtype, device=device)
        self.transformer_blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    inner,
                    heads,
                    dim_head,
                    context_dim,
                    image_cross_attention=True,
                    scale_learnable=scale_learnable,
                    attention=attention,
                    dtype=dtype,
                    device=device,
                    operations=operations,
                )
            ]
        )
        self.proj_out = operations.Linear(inner, channels, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, context: FrameContext, options: Options | None = None) -> torch.Tensor:
        options = {} if options is None else options
        _, _, h, w = x.shape
        options["activations_shape"] = list(x.shape)
        x_in = x
        x = rearrange(self.norm(x), "b c h w -> b (h w) c")
        x = self.proj_in(x)
        for index, block in enumerate(self.transformer_blocks):
            options["block_index"] = index
            x = block(x, context.text, context.image, options)
        x = self.proj_out(x)
        return rearrange(x, "b (h w) c -> b c h w", h=h, w=w) + x_in


class TemporalTransformer(nn.Module):
    """Attention over the frames of every pixel, without positional encoding or mask.

    Both attentions of its block are self-attention. ``use_linear=False`` gives the 1x1 Conv1d
    projections of ``init_attn``.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        use_linear: bool = True,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = operations.GroupNorm(32, channels, eps=1e-6, affine=True, dtype=dtype, device=device)
        if use_linear:
            self.proj_in = operations.Linear(channels, inner, dtype=dtype, device=device)
            self.proj_out = operations.Linear(inner, channels, dtype=dtype, device=device)
        else:
            self.proj_in = operations.Conv1d(channels, inner, 1, dtype=dtype, device=device)
            self.proj_out = operations.Conv1d(inner, channels, 1, dtype=dtype, device=device)
        self.transformer_blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    inner, heads, dim_head, None, attention=attention, dtype=dtype, device=device, operations=operations
                )
            ]
        )

    def forward(self, x: torch.Tensor, frames: int, options: Options | None = None) -> torch.Tensor:
        """``x`` is ``[(b t), c, h, w]``; statistics of the norm are pooled over the frames.

        The host's attention patches (written for image tokens) are not applied here; the other
        options (such as an attention-backend override) are.
        """
        options = without_patches(options or {})
        windows = options.pop(freenoise.WINDOWS, None)
        if windows is not None:  # FreeNoise: attention in overlapping windows of frames, fused
            options[freenoise.TEMPORAL_WINDOWS] = windows
        _, _, h, w = x.shape
        x_in = x
        x = unfold_frames(x, frames)
        x = self.norm(x)
        if self.use_linear:
            x = self.proj_in(rearrange(x, "b c t h w -> (b h w) t c"))
        else:
            x = rearrange(self.proj_in(rearrange(x, "b c t h w -> (b h w) c t")), "n c t -> n t c")
        for block in self.transformer_blocks:
            x = block(x, options=options)
        if self.use_linear:
            x = self.proj_out(x)
        else:
            x = rearrange(self.proj_out(rearrange(x, "n t c -> n c t")), "n c t -> n t c")
        x = rearrange(x, "(b h w) t c -> (b t) c h w", h=h, w=w)
        return x + x_in


class FrameContext(NamedTuple):
    """Cross-attention inputs for the frames: ``text`` and ``image`` tokens.

    Each may have one row per video or one per frame; attention repeats per-video rows over frames.
    (A named tuple, which ``torch.compile`` traces without a graph break.)
    """

    text: torch.Tensor
    image: torch.Tensor | None


def split_context(
    context: torch.Tensor,
    frames: int,
    image_context: torch.Tensor | None = None,
    tokens_per_frame: int = 16,
    window: int | None = None,
) -> FrameContext:
    """Build per-frame cross-attention inputs the way the original UNet does.

    Without ``image_context``, ``context`` is the original's concatenation [77 text ; image tokens].
    When the image tokens number ``tokens_per_frame * frames``, frame i gets tokens
    [16 i, 16 i + 16); otherwise every frame sees all of them (the original's rule, section 3.6).
    With a FreeNoise ``window``, the image rows are the tokens of each position ``[(b P), 16, c]``
    instead (see :func:`.freenoise.windowed_image_attention`).
    """
    if image_context is None:
        context, image_context = context[:, :TEXT_TOKENS], context[:, TEXT_TOKENS:]
    if window is not None:
        positions, rest = divmod(image_context.shape[1], tokens_per_frame)
        if rest or positions < window:
            raise ValueError(
                f"FreeNoise needs {tokens_per_frame} image tokens for each of at least {window} frame positions "
                f"(the Resampler's layout), got {image_context.shape[1]} tokens"
            )
        return FrameContext(text=context, image=rearrange(image_context, "b (p n) c -> (b p) n c", p=positions))
    if image_context.shape[1] == tokens_per_frame * frames:
        image_context = rearrange(image_context, "b (t n) c -> (b t) n c", t=frames)
    return FrameContext(text=context, image=image_context)
