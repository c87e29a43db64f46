"""The host's patch points act on DynamiCrafter: stock attention and block patch nodes, attention
replacements and patches, the attention-backend override, diffusion-model wrappers, TorchCompileModel
and custom operations. Two videos share each batch, so frames-as-batch is exercised with B > 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from support.stock_nodes import call_node, ksample, stock_node
from support.tiny_checkpoints import COMPACT_UNET, TINY_UNET
from support.tiny_host import (
    FRAMES,
    H,
    W,
    conditioning,
    host_conds,
    relative_error,
    tiny_checkpoint,
)

VIDEOS = 2


def _tiny_setup(comfy_host, unet=TINY_UNET):
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    model = host_model.model_from_checkpoint(tiny_checkpoint("512", unet), "fp32")
    positive, negative = host_conds(comfy_host.import_pack_module("nodes.adapter.family"), *conditioning(), 24)
    return model, positive, negative, {"samples": torch.zeros(VIDEOS * FRAMES, 4, H, W)}


@pytest.fixture(scope="module")
def tiny(comfy_host):
    return _tiny_setup(comfy_host)


@pytest.fixture(scope="module")
def compact(comfy_host):
    """The tiny model with two levels of one block each, for torch.compile (its tracing time grows with layers)."""
    return _tiny_setup(comfy_host, COMPACT_UNET)


@pytest.fixture(scope="module")
def baseline(comfy_host, tiny):
    """The unpatched model's result, with one torch thread as every test here samples (a result depends on
    the thread count in its last bits)."""
    model, positive, negative, latent = tiny
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ksample(comfy_host.nodes, model, positive, negative, latent)
    finally:
        torch.set_num_threads(threads)


def _sample(comfy_host, tiny, model=None) -> torch.Tensor:
    unpatched, positive, negative, latent = tiny
    return ksample(comfy_host.nodes, model or unpatched, positive, negative, latent)


@pytest.mark.parametrize(
    "module, node, inputs",
    [
        ("comfy_extras.nodes_pag", "PerturbedAttentionGuidance", {"scale": 3.0}),
        ("comfy_extras.nodes_freelunch", "FreeU_V2", {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}),
    ],
)
def test_stock_patch_node_acts_and_unpatched_model_is_unchanged(
    comfy_host, tiny, baseline, single_thread, module, node, inputs
):
    patched_model = call_node(stock_node(module, node), model=tiny[0], **inputs)[0]
    patched = _sample(comfy_host, tiny, patched_model)
    assert torch.isfinite(patched).all()
    assert relative_error(patched, baseline) > 1e-3, f"{node} did not change the result"
    assert torch.equal(_sample(comfy_host, tiny), baseline), f"{node} changed the model it was given"


def test_attention_patches_see_frames_as_batch_and_replacements_route(comfy_host, tiny, baseline, single_thread):
    import comfy.ldm.modules.attention as host_attention

    seen = []

    def attn1_patch(n, context, value, extra):
        seen.append((n.shape[0], extra["original_shape"], len(extra["cond_or_uncond"]), extra["block"]))
        return n, context, value

    def same_attention(q, k, v, extra):
        assert q.shape[0] == k.shape[0] == extra["original_shape"][0]
        return host_attention.optimized_attention(q, k, v, extra["n_heads"])

    model = tiny[0].clone()
    model.set_model_attn1_patch(attn1_patch)
    for index in range(len(model.model.diffusion_model.input_blocks)):
        model.set_model_attn2_replace(same_attention, "input", index)
    model.set_model_attn1_replace(same_attention, "middle", 0, 0)
    out = _sample(comfy_host, tiny, model)
    assert torch.equal(out, baseline), "replacements that compute the same attention must not change the result"
    assert seen and {block[0] for *_, block in seen} == {"input", "middle", "output"}
    for rows, original_shape, chunks, _ in seen:
        assert original_shape[0] == rows == VIDEOS * FRAMES * chunks
        assert original_shape[2:] == [H, W]

    def no_text(q, k, v, extra):
        return torch.zeros_like(q)

    model = tiny[0].clone()
    model.set_model_attn2_replace(no_text, "middle", 0)
    assert relative_error(_sample(comfy_host, tiny, model), baseline) > 1e-3


def test_attention_override_and_wrappers_reach_every_attention(comfy_host, tiny, baseline, single_thread):
    import comfy.patcher_extension as extension

    unet = tiny[0].model.diffusion_model
    spatial = sum(type(m).__name__ == "SpatialTransformer" for m in unet.modules())
    temporal = sum(type(m).__name__ == "TemporalTransformer" for m in unet.modules())
    calls, forwards = [], []

    def override(func, *args, **kwargs):
        calls.append(args[0].shape[0])
        return func(*args, **kwargs) * 0.5

    def diffusion_wrapper(executor, *args, **kwargs):
        forwards.append(args[0].shape[0])
        return executor(*args, **kwargs)

    model = tiny[0].clone()
    model.model_options["transformer_options"] = {
        **model.model_options.get("transformer_options", {}),
        "optimized_attention_override": override,
    }
    model.add_wrapper_with_key(extension.WrappersMP.DIFFUSION_MODEL, "dynamicrafter-test", diffusion_wrapper)
    out = _sample(comfy_host, tiny, model)
    # every spatial transformer attends three times (self, text, image), every temporal one twice, and the
    # Resampler's layers once per run (its output is reused across steps)
    resampler_layers = len(unet.image_proj_model.layers)
    assert forwards and len(calls) == len(forwards) * (3 * spatial + 2 * temporal) + resampler_layers
    assert relative_error(out, baseline) > 1e-3
    assert torch.equal(_sample(comfy_host, tiny), baseline)


def test_torch_compile_node_traces_the_model_whole_and_matches_eager(comfy_host, compact, single_thread):
    """The stock node's compile of the diffusion model, with no graph break inside DynamiCrafter.

    The host's CPU attention functions ask psutil for free memory (a graph break of the host's own), so
    the host's PyTorch attention is chosen through the attention override, as on GPUs. The backend is
    ``aot_eager``: the node's code path and the whole graph capture, without inductor's C++ build, which
    takes longer than this suite's budget on a small CPU. The compact network has every kind of block the
    full one has (Dynamo's tracing time grows with the number of layers).
    """
    import comfy.ldm.modules.attention as host_attention
    import torch._dynamo

    def pytorch_attention(func, *args, **kwargs):
        return host_attention.attention_pytorch(*args, **kwargs)

    eager = compact[0].clone()
    eager.model_options["transformer_options"] = {
        **eager.model_options.get("transformer_options", {}),
        "optimized_attention_override": pytorch_attention,
    }
    expected = _sample(comfy_host, compact, eager)
    compiled = call_node(
        stock_node("comfy_extras.nodes_torch_compile", "TorchCompileModel"), model=eager, backend="aot_eager"
    )[0]
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    out = _sample(comfy_host, compact, compiled)
    assert counters["stats"]["unique_graphs"] > 0, "nothing was compiled"
    assert not counters["graph_break"], f"graph breaks: {list(counters['graph_break'])}"
    assert relative_error(out, expected) < 1e-4


def _recording_operations():
    import comfy.ops

    calls: dict[str, int] = {}
    base = comfy.ops.disable_weight_init

    def recording(layer: type) -> type:
        def forward(self, *args, **kwargs):
            calls[layer.__name__] = calls.get(layer.__name__, 0) + 1
            return layer.forward(self, *args, **kwargs)

        return type(layer.__name__, (layer,), {"forward": forward})

    names = ("Linear", "Conv1d", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm")
    ops = type("RecordingOperations", (base,), {name: recording(getattr(base, name)) for name in names})
    return ops, calls


def test_custom_operations_from_model_options_build_every_layer(comfy_host, tiny, baseline, single_thread):
    ops, calls = _recording_operations()
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    model = host_model.model_from_checkpoint(tiny_checkpoint("512"), "fp32", model_options={"custom_operations": ops})
    layers = [
        m
        for m in model.model.diffusion_model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm))
    ]
    assert layers and all(type(m) is getattr(ops, type(m).__name__) for m in layers)
    out = _sample(comfy_host, tiny, model)
    assert set(calls) == {"Linear", "Conv1d", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm"}
    assert relative_error(out, baseline) < 1e-5


def test_fp8_fast_choice_sets_the_hosts_fp8_option(comfy_host):
    host_model = comfy_host.import_pack_module("nodes.adapter.patcher")
    fast = host_model.model_from_checkpoint(tiny_checkpoint("512"), "fp8_e4m3fn_fast")
    plain = host_model.model_from_checkpoint(tiny_checkpoint("512"), "fp8_e4m3fn")
    assert fast.model.model_config.optimizations["fp8"] and not plain.model.model_config.optimizations["fp8"]
    assert fast.model.diffusion_model.input_blocks[1][0].in_layers[2].weight.dtype == torch.float8_e4m3fn


def test_files_are_read_through_the_hosts_reader(comfy_host, tmp_path, monkeypatch):
    import comfy.utils
    from safetensors.torch import save_file

    ckpt = tiny_checkpoint("512")
    sd = {f"model.diffusion_model.{k}": v for k, v in ckpt.require("unet").items()}
    sd.update({f"image_proj_model.{k}": v for k, v in ckpt.require("resampler").items()})
    path = tmp_path / "dynamicrafter_512_tiny.safetensors"
    save_file(sd, str(path))
    host_reader, read = comfy.utils.load_torch_file, []

    def spy(name, *args, **kwargs):
        read.append(name)
        return host_reader(name, *args, **kwargs)

    monkeypatch.setattr(comfy.utils, "load_torch_file", spy)
    monkeypatch.setattr(comfy.utils, "DISABLE_MMAP", True)
    loaded = comfy_host.import_pack_module("nodes.adapter.patcher").read_checkpoint(path)
    assert read == [str(path)]
    assert all(torch.equal(loaded.require("unet")[k], v) for k, v in ckpt.require("unet").items())
