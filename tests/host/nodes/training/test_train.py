"""The Train LoRA node on the tiny model: it learns, its file loads with the stock loader, Cancel keeps the
adapters, a run resumes from the file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from support.training_host import moving_ball

EVAL_SEED = 99


def evaluate(training_host, model, clips) -> float:
    """The objective over fixed draws, with ``model``'s patches (a LoRA) applied."""
    training_host.host.import_pack_module("nodes.training.loop")
    mm = __import__("comfy.model_management", fromlist=["load_models_gpu"])
    mm.load_models_gpu([model])
    return training_host.pack("nodes.training.loop").evaluate(model.model, clips, EVAL_SEED)


@pytest.fixture(scope="module")
def trained(training_host):
    clips = training_host.clips(moving_ball())
    before = evaluate(training_host, training_host.model, clips)
    lora, losses, steps = training_host.train(clips, steps=40)
    return clips, lora, losses, steps, before


def test_the_loss_goes_down(training_host, trained, single_thread):
    clips, lora, losses, steps, before = trained
    assert steps == 40 and len(losses["loss"]) == 40
    after = evaluate(training_host, training_host.with_lora(lora), clips)
    print(f"\nobjective on fixed draws: {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before
    # training changed only the LoRA: the model it started from gives the same numbers as before
    assert abs(evaluate(training_host, training_host.model, clips) - before) < 1e-6 * before


def test_the_lora_is_the_hosts_format(trained):
    _, lora, _, _, _ = trained
    ups = [k for k in lora if k.endswith(".lora_up.weight")]
    assert ups and all(k.startswith("diffusion_model.") for k in lora)
    assert any(".image_proj_model." in k for k in ups)  # the Resampler trains too
    assert any(".attn2.to_k_ip." in k for k in ups) and any("in_layers.2" in k for k in ups)
    assert all(lora[k.replace(".lora_up.weight", ".alpha")].item() == 8.0 for k in ups)


def test_the_saved_file_loads_with_the_stock_loader(training_host, trained, single_thread):
    clips, lora, _, _, _ = trained
    files = sorted(training_host.loras.rglob("test_lora_40_steps_*.safetensors"))
    assert files, "the train node writes its LoRA into the loras folder"
    saved = load_file(str(files[-1]))
    assert set(saved) == set(lora) and all(torch.equal(saved[k], lora[k]) for k in lora)
    name = files[-1].relative_to(training_host.loras).as_posix()
    stock = training_host.host.nodes.LoraLoaderModelOnly().load_lora_model_only(training_host.model, name, 1.0)[0]
    layers = {k.removesuffix(".lora_up.weight") + ".weight" for k in lora if k.endswith(".lora_up.weight")}
    assert set(stock.patches) == layers
    through_stock = evaluate(training_host, stock, clips)
    through_node = evaluate(training_host, training_host.with_lora(lora), clips)
    plain = evaluate(training_host, training_host.model, clips)
    assert abs(through_stock - through_node) < 1e-5 * through_node
    assert abs(through_stock - plain) > 1e-2 * plain


def test_cancel_keeps_the_adapters_and_a_run_resumes(training_host, monkeypatch, single_thread):
    clips = training_host.clips(moving_ball(seed=1))
    loop = training_host.pack("nodes.training.loop")
    mm = loop.mm
    real_train = loop.train

    def cancel_after_three(*args, **kwargs):
        kwargs["on_step"] = lambda step, loss: mm.interrupt_current_processing(True) if step == 3 else None
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training_host.pack("nodes.training.train"), "train", cancel_after_three)
    with pytest.raises(mm.InterruptProcessingException):
        training_host.train(clips, steps=50, lora_name="dynamicrafter/cancelled")
    assert not mm.processing_interrupted()
    files = sorted(training_host.loras.rglob("cancelled_3_steps_*.safetensors"))
    assert len(files) == 1, "Cancel after 3 steps writes a 3-step LoRA"
    cancelled = load_file(str(files[0]))
    monkeypatch.undo()

    name = files[0].relative_to(training_host.loras).as_posix()
    fresh = training_host.train(clips, steps=1, learning_rate=1e-7, existing_lora="[None]", lora_name="dynamicrafter/x")
    resumed, _, steps = training_host.train(
        clips, steps=1, learning_rate=1e-7, existing_lora=name, lora_name="dynamicrafter/resumed"
    )
    assert steps == 4
    ups = [k for k in cancelled if k.endswith(".lora_down.weight")]
    # a tiny learning rate: one more step stays next to where Cancel left the adapters, far from a new LoRA
    assert all(torch.allclose(resumed[k], cancelled[k], atol=1e-5) for k in ups)
    assert any(not torch.allclose(fresh[0][k], cancelled[k], atol=1e-5) for k in ups)


def _sample(training_host, model, clips, seed: int) -> torch.Tensor:
    """A video from the clip's first frame and caption (stock KSampler, euler, 12 steps, no CFG), frames folded."""
    from support.stock_nodes import ksample
    from support.tiny_host import host_conds

    family = training_host.pack("nodes.adapter.family")
    latents, text, tokens = clips.latents[0], clips.texts[0][None], clips.clip_frames[0][:1]
    first = latents[:, 0][None]  # [1, 4, h, w], as the host VAE gives it
    positive, negative = host_conds(family, text, clips.empty_text, tokens, clips.clip_blank, first, clips.fs[0])
    empty = {"samples": torch.zeros(latents.shape[1], *latents.shape[0:1], *latents.shape[2:])}
    return ksample(training_host.host.nodes, model, positive, negative, empty, seed=seed, steps=12, cfg=1.0)


def test_a_video_sampled_with_the_lora_moves_towards_the_clip(training_host, trained, single_thread):
    clips, lora, _, _, _ = trained
    target = clips.latents[0].transpose(0, 1)  # [T, 4, h, w], raw like the sampler's output
    distance = lambda video: float((video - target).pow(2).mean())  # noqa: E731
    for seed in (1, 2):
        plain = distance(_sample(training_host, training_host.model, clips, seed))
        tuned = distance(_sample(training_host, training_host.with_lora(lora), clips, seed))
        print(f"\nseed {seed}: mean squared distance to the clip {plain:.4f} without the LoRA, {tuned:.4f} with it")
        assert tuned < 0.8 * plain


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_autocast_with_checkpointing_trains(training_host, dtype, single_thread):
    """bf16 / fp16 autocast (fp16 with the gradient scaler) and gradient checkpointing: finite losses, the LoRA moves."""
    clips = training_host.clips(moving_ball(seed=3))
    lora, losses, _ = training_host.train(
        clips, steps=3, training_dtype=dtype, gradient_checkpointing=True, lora_name=f"dynamicrafter/{dtype}"
    )
    assert len(losses["loss"]) == 3 and all(torch.isfinite(torch.tensor(losses["loss"])))
    downs = [v for k, v in lora.items() if k.endswith(".lora_down.weight")]
    assert all(v.dtype == torch.float32 for v in downs) and any(v.abs().max() > 0 for v in downs)
