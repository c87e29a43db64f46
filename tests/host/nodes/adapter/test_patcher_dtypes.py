"""Weight storage dtypes through the host: fp16, bf16 and fp8 storage give the fp32 result within their precision."""

from __future__ import annotations

import pytest
import torch

from support.tiny_host import FRAMES, H, W, conditioning, host_conds, relative_error, tiny_checkpoint


def _sample(comfy_host, weight_dtype: str) -> tuple[torch.Tensor, object]:
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    sampler_nodes = comfy_host.import_pack_module("nodes.sampler")
    model = host_model.model_from_checkpoint(tiny_checkpoint("512"), weight_dtype)
    positive, negative = host_conds(comfy_host.import_pack_module("nodes.adapter.family"), *conditioning(3), 24)
    latent = {"samples": torch.zeros(FRAMES, 4, H, W)}
    with torch.no_grad():
        out = sampler_nodes.DynamiCrafterSampler.execute(
            model, positive, negative, latent, 9, 3, 7.5, 1.0, -1.0, "auto", "auto"
        ).result[0]["samples"]
    return out, model


@pytest.fixture(scope="module")
def fp32_result(comfy_host):
    return _sample(comfy_host, "fp32")[0]


@pytest.mark.parametrize(
    "weight_dtype, stored, tolerance",
    [("fp16", torch.float16, 0.05), ("bf16", torch.bfloat16, 0.2), ("fp8_e4m3fn", torch.float8_e4m3fn, 1.0)],
)
def test_storage_dtype_close_to_fp32(comfy_host, fp32_result, weight_dtype, stored, tolerance):
    out, model = _sample(comfy_host, weight_dtype)
    weights = model.model.diffusion_model.input_blocks[1][0].in_layers[2].weight
    assert weights.dtype == stored
    assert torch.isfinite(out).all()
    error = relative_error(out, fp32_result)
    assert 0 < error < tolerance, f"{weight_dtype}: {error}"
