"""ToonCrafter sketch guidance in the real host: against the reference's goldens (tests/data/parity_sketch), the
full-size sketch encoder's keys and shapes (tests/data/checkpoint_manifests), the stock and pack samplers, and
the clear errors for a wrong ControlNet or sketches that do not fit the video."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from support import sketch_parity as sp
from support.sd21_layout import controlnet, controlnet_state_dict
from support.stock_nodes import ksample
from support.tiny_host import relative_error

TOL = 1e-4
MANIFEST = sp.GOLDENS.parent / "checkpoint_manifests" / "tooncrafter_sketch_encoder.json"


@pytest.fixture(scope="module")
def setup(comfy_host, tmp_path_factory):
    import comfy.controlnet

    data = sp.inputs()
    # float64 sums: equal to rounding (the summation order follows the thread count); other draws differ wholly
    replayed = torch.allclose(sp.fingerprint(data), sp.goldens()["fingerprint"], rtol=1e-12, atol=0.0)
    assert replayed, "the golden inputs were not replayed"
    folder = tmp_path_factory.mktemp("sketch-controlnet")
    save_file(sp.random_weights("controlnet"), str(folder / "sketch_encoder_parity.safetensors"))
    comfy_host.folder_paths.add_model_folder_path("controlnet", str(folder))
    control_net = comfy_host.nodes.ControlNetLoader().load_controlnet("sketch_encoder_parity.safetensors")[0]
    assert isinstance(control_net, comfy.controlnet.ControlNet)
    model = comfy_host.import_pack_module("nodes.adapter.patcher").model_from_checkpoint(sp.checkpoint(), "fp32")
    conds = sp.conditioning(comfy_host.import_pack_module("nodes.adapter.family"), data)
    return data, model, control_net, conds


def _guide(comfy_host, control_net, conds, sketches, frames="", strength=0.6, start=0.0, end=1.0, invert=True):
    node = comfy_host.import_pack_module("nodes.sketch").DynamiCrafterSketchGuidance
    return node.execute(*conds, control_net, sketches, frames, strength, start, end, invert).result


def test_layouts_match_the_reference(setup):
    _, model, control_net, _ = setup
    shapes = lambda sd: {k: list(v.shape) for k, v in sd.items()}  # noqa: E731
    assert shapes(control_net.control_model.state_dict()) == sp.CONFIG["keys"]["controlnet"]
    net = model.model.diffusion_model.state_dict()
    resampler = {k.removeprefix("image_proj_model."): v for k, v in net.items() if k.startswith("image_proj_model.")}
    unet = {k: v for k, v in net.items() if not k.startswith("image_proj_model.")}
    assert shapes(unet) == sp.CONFIG["keys"]["unet"]
    assert shapes(resampler) == sp.CONFIG["keys"]["resampler"]


@pytest.mark.parametrize("side", ["cond", "uncond"])
def test_sketch_control_matches_the_reference(comfy_host, setup, side, single_thread):
    data, model, control_net, conds = setup
    golden = sp.goldens()
    positive, negative = _guide(comfy_host, control_net, conds, sp.sketch_images(data["hint"]))
    guided = positive if side == "cond" else negative
    plain = conds[0] if side == "cond" else conds[1]
    out = sp.model_output(comfy_host, model, guided, data["x_noisy"], sp.CONFIG["timestep"])
    assert relative_error(out, golden[f"{side}.control"]) < TOL
    without = sp.model_output(comfy_host, model, plain, data["x_noisy"], sp.CONFIG["timestep"])
    assert relative_error(without, golden[f"{side}.plain"]) < TOL
    assert relative_error(out, golden[f"{side}.plain"]) > 0.1  # the sketches do change the prediction


def test_free_frames_get_no_control(comfy_host, setup, single_thread):
    """Frames without a sketch get no residual: the skip features the UNet's output blocks receive (residual
    added) differ from the unguided ones on the sketched frames only. (The video as a whole still changes: the
    temporal layers carry the guidance across frames, as in the reference.)"""
    data, model, control_net, conds = setup
    sketches = sp.sketch_images(data["hint"])[[2, 9]]
    positive, _ = _guide(comfy_host, control_net, conds, sketches, frames="2, 9", strength=1.0)
    seen = []

    def record(h, skip, options):
        seen.append(skip)
        return h, skip

    def run(conditioning):
        seen.clear()
        patched = model.clone()
        patched.set_model_output_block_patch(record)
        sp.model_output(comfy_host, patched, conditioning, data["x_noisy"], sp.CONFIG["timestep"])
        return [s.clone() for s in seen]

    with_sketch, without = run(positive), run(conds[0])
    every, _ = _guide(comfy_host, control_net, conds, sp.sketch_images(data["hint"]), strength=1.0)
    with_all = run(every)
    for a, b, full in zip(with_sketch, without, with_all, strict=True):
        differs = (a - b).flatten(1).abs().amax(1) > 0
        assert differs.tolist() == [f in (2, 9) for f in range(sp.FRAMES)]
        # the network ran on frames 2 and 9 only, and gave them what it gives them among all 16
        assert torch.allclose((a - b)[[2, 9]], (full - b)[[2, 9]], rtol=1e-4, atol=1e-6)


def test_stock_and_pack_samplers_take_it_and_strength_zero_is_no_sketch(comfy_host, setup, single_thread):
    data, model, control_net, conds = setup
    sketches = sp.sketch_images(data["hint"])[:3]
    latent = {"samples": torch.zeros(sp.FRAMES, 4, 4, 4)}
    plain = ksample(comfy_host.nodes, model, *conds, latent, steps=2)
    guided = ksample(comfy_host.nodes, model, *_guide(comfy_host, control_net, conds, sketches, "0-2"), latent, steps=2)
    off = ksample(
        comfy_host.nodes, model, *_guide(comfy_host, control_net, conds, sketches, "0-2", 0.0), latent, steps=2
    )
    assert torch.equal(off, plain)
    assert relative_error(guided, plain) > 1e-3
    late = _guide(comfy_host, control_net, conds, sketches, "0-2", 0.6, start=0.99, end=1.0)
    assert relative_error(ksample(comfy_host.nodes, model, *late, latent, steps=2), plain) < relative_error(
        guided, plain
    )

    sampler = comfy_host.import_pack_module("nodes.sampler").DynamiCrafterSampler
    schema = sampler.GET_SCHEMA()
    defaults = {i.id: i.default for i in schema.inputs if getattr(i, "default", None) is not None}
    pos, neg = _guide(comfy_host, control_net, conds, sketches, "0-2")
    inputs = {**defaults, "model": model, "positive": pos, "negative": neg, "latent": latent, "steps": 2}
    with torch.no_grad():
        ours = sampler.execute(**inputs).result[0]["samples"]
        ours_plain = sampler.execute(**{**inputs, "positive": conds[0], "negative": conds[1]}).result[0]["samples"]
    assert relative_error(ours, ours_plain) > 1e-3


def test_wrong_controlnet_is_refused_clearly(comfy_host, setup, tmp_path):
    data, _, _, conds = setup
    save_file(controlnet_state_dict(), str(tmp_path / "canny_like.safetensors"))
    comfy_host.folder_paths.add_model_folder_path("controlnet", str(tmp_path))
    stock = comfy_host.nodes.ControlNetLoader().load_controlnet("canny_like.safetensors")[0]
    with pytest.raises(ValueError, match="reads 3-channel hint pictures.*sketch_encoder.ckpt"):
        _guide(comfy_host, stock, conds, sp.sketch_images(data["hint"]))
    with pytest.raises(ValueError, match="not an SD-layout ControlNet.*sketch_encoder"):
        _guide(comfy_host, object(), conds, sp.sketch_images(data["hint"]))


def test_a_one_channel_controlnet_of_another_width_is_refused(comfy_host, setup):
    import comfy.controlnet

    data, _, _, conds = setup
    sd15_wide = comfy.controlnet.ControlNet(controlnet(hint_channels=1, context_dim=768, device="meta"))
    with pytest.raises(ValueError, match="reads 768-wide text context.*sketch_encoder.ckpt"):
        _guide(comfy_host, sd15_wide, conds, sp.sketch_images(data["hint"]))


def test_sketch_pictures_become_the_references_hint(comfy_host):
    """Grey value, inverted for dark-on-white drawings, fitted to the video (cover and centre crop)."""
    sketch = comfy_host.import_pack_module("nodes.sketch")
    drawing = torch.ones(1, 40, 80, 3)  # white paper, 2:1
    drawing[:, 20, :, :] = 0.0  # a black horizontal line
    drawing[:, :, 0:20, 0] = 1.0  # a red patch on the left quarter (cut off by the 1:1 crop)
    drawing[:, :, 0:20, 1:] = 0.0
    hint = sketch.sketch_hint(drawing, 40, 40, invert=True)
    assert hint.shape == (1, 1, 40, 40)
    assert torch.allclose(hint[0, 0, 20], torch.ones(40), atol=1e-6)  # the line: 1
    assert hint[0, 0, :10].abs().max() < 1e-6  # paper: 0
    raw = sketch.sketch_hint(drawing, 40, 40, invert=False)
    assert torch.allclose(raw, 1.0 - hint, atol=1e-6)
    red = sketch.sketch_hint(drawing, 80, 40, invert=False)[0, 0, 0, 0]
    assert abs(float(red) - 0.299) < 1e-6  # BT.601 grey of pure red, as OpenCV's COLOR_BGR2GRAY


def test_sketches_that_do_not_fit_are_refused_clearly(comfy_host, setup):
    data, _, control_net, conds = setup
    sketches = sp.sketch_images(data["hint"])
    with pytest.raises(ValueError, match="3 sketches for a 16-frame video"):
        _guide(comfy_host, control_net, conds, sketches[:3])
    with pytest.raises(ValueError, match="lists 2 frames .* but 3 sketches"):
        _guide(comfy_host, control_net, conds, sketches[:3], frames="0, 5")
    with pytest.raises(ValueError, match="each frame once, in increasing order"):
        _guide(comfy_host, control_net, conds, sketches[:2], frames="9, 2")
    with pytest.raises(ValueError, match="each frame once, in increasing order"):
        _guide(comfy_host, control_net, conds, sketches[:3], frames="2-4, 3")
    with pytest.raises(ValueError, match="outside the video's frames 0-15"):
        _guide(comfy_host, control_net, conds, sketches[:1], frames="16")
    node = comfy_host.import_pack_module("nodes.sketch").DynamiCrafterSketchGuidance
    assert "start_percent" in node.validate_inputs(start_percent=0.8, end_percent=0.2, frames="", strength=0.6)
    assert "frames" in node.validate_inputs(frames="zero", start_percent=0.0, end_percent=1.0, strength=0.6)
    with pytest.raises(ValueError, match="needs the DynamiCrafter conditioning"):
        _guide(comfy_host, control_net, ([[data["text"], {}]], [[data["uc_text"], {}]]), sketches)


def test_full_size_sketch_encoder_keys_and_shapes(comfy_host):
    """The released sketch encoder's keys and shapes (manifest from the reference config, meta tensors): the host
    derives exactly that network from them, and the pack's apply node takes it as a sketch encoder."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_detection
    import comfy.ops

    manifest = json.loads(MANIFEST.read_text())
    sd = {k: torch.empty(shape, device="meta") for k, shape in manifest["keys"].items()}
    config = dict(comfy.model_detection.model_config_from_unet(sd, "", True).unet_config)
    config.pop("out_channels")
    config.update(hint_channels=sd["input_hint_block.0.weight"].shape[1], operations=comfy.ops.disable_weight_init)
    net = comfy.cldm.cldm.ControlNet(**config, device="meta", dtype=torch.float16)
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == manifest["keys"]
    assert sum(v.numel() for v in net.state_dict().values()) == manifest["n_elements"] == 364_227_952
    control = comfy.controlnet.ControlNet.__new__(comfy.controlnet.ControlNet)
    control.control_model = net
    assert comfy_host.import_pack_module("nodes.sketch").sketch_encoder_problem(control) is None
