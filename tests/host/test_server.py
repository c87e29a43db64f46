"""A real headless ComfyUI server with the pack installed as a user has it (a folder in ``custom_nodes``).

One server per module (``tests/support/comfy_server.py``): the pack's nodes are in ``/object_info``, its
workflows in the template browser, every shipped API workflow runs on a tiny checkpoint written in the
original file layout (tiny UNet, full-size random CLIP encoders) and writes its MP4, an interrupt stops
sampling without hurting the next prompt, and bad input gets a clear message while the server keeps serving.
The LoRA workflow loads a tiny LoRA for that checkpoint's UNet; the ControlNet workflow runs last, on a second
checkpoint with SD 2.1's widths (what SD 2.x ControlNets need) and a tiny SD 2.1-layout ControlNet.

Every other prompt that runs uses ONE tiny checkpoint, so that the server keeps the loaded model, the encoded
prompts and the conditioning between prompts (loading means reading a 2 GB file and building full-size
random CLIP encoders, and each CLIP call takes seconds on a CPU). The tests are ordered for that cache: the
failing files first, then the size error (the first load), the workflows, and the interrupt, which reuses
the last workflow's conditioning. Its file name carries "interp", so the loader's ``auto`` variant picks
the interpolation model, which also runs the image-to-video graphs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import av
import pytest
import torch
from safetensors.torch import save_file

from support.comfy_server import (
    WORKFLOW_INPUTS,
    ComfyServer,
    PromptRejected,
    PromptRun,
    ServerSetup,
    load_api_workflow,
    nodes_of,
    shrink_workflow,
    workflow_names,
)
from support.host_checkpoints import host_state_dict, write_host_checkpoint
from support.reference_data import manifest_path
from support.stock_model_files import write_sd21_layout_checkpoint, write_workflow_model_files

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FRAMES, STEPS = 128, 64, 16, 1
TINY = "dynamicrafter_tiny_512_interp.ckpt"
PRUNED = "dynamicrafter_512_fp16_pruned.safetensors"
SD15 = "sd15_pruned_emaonly.safetensors"
SD21_LAYOUT = "dynamicrafter_512_sd21_layout_tiny.safetensors"
"""The checkpoint the ControlNet workflow runs on: SD 2.1's widths, which SD 2.x ControlNets need."""
RUN_ORDER = [
    "image_to_video_512",
    "image_to_video_256",
    "image_to_video_1024",
    "lora_512",
    "video_restyle_512",
    "pinned_first_frame_512",
    "interpolation_512",
    "loop_512",
]
RUN_ON_SD21_LAYOUT = ["controlnet_512"]
"""Run last (after the interrupt, which reuses the cached conditioning), on :data:`SD21_LAYOUT`."""
RUN_IN_PROCESS = [
    "keyframe_chain_512",
    "long_video_512",
    "long_video_freenoise_512",
    "photo_to_film",
    "story_to_film",
    "tooncrafter_512",
    "image_guidance_512",
    "tooncrafter_sketch_512",
    "cil_image_to_video_512",
    "camera_control_256",
    "camera_control_512",
    "train_lora_512",
]
"""Run end to end in-process by tests/host/workflows/: test_features.py (they need other checkpoints, a music
folder, a fake AI service), test_controls.py (SamplerCustomAdvanced: no DynamiCrafter Sampler to follow the
progress of), test_sketch.py (a sketch encoder), test_cil.py (the analytic-init statistics), test_camera.py (camera
files; the 512 one validated) and test_training.py (training clips and a LoRA)."""


def sd15_shaped_file(path: Path) -> None:
    """A small file with the keys of a Stable Diffusion 1.5 checkpoint (4-channel UNet, no temporal layers)."""
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": torch.zeros(32),
        "model.diffusion_model.out.2.weight": torch.zeros(4, 32, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(16, 8),
        "first_stage_model.decoder.conv_in.weight": torch.zeros(8, 4, 3, 3),
    }
    save_file(tensors, str(path))


@pytest.fixture(scope="module")
def server(comfy_host, tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy-server")
    setup = ServerSetup.create(root, ("checkpoints", "diffusion_models", "controlnet", "loras"))
    server = ComfyServer(comfy_host.comfy_dir, setup, root / "server.log")
    server.start()  # ComfyUI imports while the checkpoints are written
    try:
        checkpoints = setup.models / "checkpoints"
        write_host_checkpoint(checkpoints / TINY, "512", manifest_path("512"))
        write_host_checkpoint(checkpoints / PRUNED, "512", manifest_path("512"), "pruned")
        sd15_shaped_file(checkpoints / SD15)
        write_sd21_layout_checkpoint(checkpoints / SD21_LAYOUT)
        unet = host_state_dict("512", manifest_path("512"), with_encoders=False)  # TINY's UNet, for the LoRA
        write_workflow_model_files(setup.models, unet)
        for picture in WORKFLOW_INPUTS.iterdir():  # the example pictures and video
            shutil.copy(picture, setup.input_dir / picture.name)
        server.wait_ready()
        yield server
    finally:
        server.stop()
        log.info("server log:\n%s", server.log_text())


def tiny(name: str, ckpt_name: str = TINY, width: int = WIDTH, steps: int = STEPS) -> dict[str, Any]:
    """A shipped API workflow on a tiny checkpoint, at the test size."""
    return shrink_workflow(load_api_workflow(name), ckpt_name=ckpt_name, width=width, height=HEIGHT, steps=steps)


def set_input(prompt: dict[str, Any], class_type: str, **values: Any) -> dict[str, Any]:
    for node in nodes_of(prompt, class_type):
        node["inputs"].update(values)
    return prompt


def sampler_id(prompt: dict[str, Any]) -> str:
    (node_id,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterSampler"]
    return node_id


def video_facts(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.width, stream.height


def expect_success(server: ComfyServer, run: PromptRun) -> None:
    assert run.outcome == "execution_success", (
        f"{run.outcome}: {json.dumps(run.of_type('execution_error'))[:3000]}\n{server.log_tail()}"
    )


def expect_failure(server: ComfyServer, prompt: dict[str, Any], *fragments: str) -> dict[str, Any]:
    run = server.run(prompt)
    assert run.outcome == "execution_error", f"expected a failure, got {run.outcome}"
    message = run.error["exception_message"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the error message: {message}"
    assert server.alive() and server.get("/system_stats").status == 200
    return run.error


# --------------------------------------------------------------------------------------------------
# The pack as installed
# --------------------------------------------------------------------------------------------------


def test_object_info_lists_every_pack_node(server, comfy_host):
    info = server.get("/object_info").body
    expected = {cls.GET_SCHEMA().node_id for cls in comfy_host.pack_nodes}
    missing = sorted(expected - set(info))
    assert not missing, f"not in /object_info: {missing}\n{server.log_tail()}"
    modules = {info[node_id]["python_module"] for node_id in expected}
    assert modules == {f"custom_nodes.{server.setup.pack_name}"}
    assert "IMPORT FAILED" not in server.log_text()


def test_template_browser_lists_the_workflows(server):
    templates = server.get("/workflow_templates").body
    pack = server.setup.pack_name
    assert sorted(templates.get(pack, [])) == workflow_names(), templates
    for name in workflow_names():
        reply = server.get(f"/api/workflow_templates/{pack}/{name}.json")
        assert reply.status == 200
        shipped = json.loads((server.setup.custom_nodes / pack / "workflows" / f"{name}.json").read_text())
        body = reply.body if isinstance(reply.body, dict) else json.loads(reply.body)
        assert body == shipped
        thumbnail = server.get(f"/api/workflow_templates/{pack}/{name}.jpg")
        assert thumbnail.status == 200 and thumbnail.body[:3] == b"\xff\xd8\xff"


# --------------------------------------------------------------------------------------------------
# Bad input: a clear message, and the server keeps serving
# --------------------------------------------------------------------------------------------------


def test_too_few_frames_is_refused_before_running(server):
    prompt = set_input(tiny("image_to_video_512"), "DynamiCrafterImageToVideo", frames=1)
    with pytest.raises(PromptRejected) as refused:
        server.run(prompt)
    reply = refused.value.reply
    assert reply.status == 400
    errors = json.dumps(reply.body["node_errors"])
    assert "frames = 1 is below its minimum 2" in errors


def test_missing_picture_is_refused_before_running(server):
    prompt = set_input(tiny("image_to_video_512"), "LoadImage", image="no_such_picture.png")
    with pytest.raises(PromptRejected) as refused:
        server.run(prompt)
    assert refused.value.reply.status == 400
    assert "Invalid image file: no_such_picture.png" in json.dumps(refused.value.reply.body["node_errors"])


def test_not_a_dynamicrafter_file(server):
    expect_failure(
        server,
        tiny("image_to_video_512", ckpt_name=SD15),
        SD15,
        "not a DynamiCrafter checkpoint",
        "Stable Diffusion 1.x/2.x",
    )


def test_pruned_file_in_the_full_loader_names_the_stock_clip_files(server):
    expect_failure(server, tiny("image_to_video_512", ckpt_name=PRUNED), PRUNED, "Load CLIP", "stable_diffusion")


def test_size_off_the_grid_is_refused_before_running(server):
    with pytest.raises(PromptRejected) as refused:
        server.run(tiny("image_to_video_512", width=100))
    assert refused.value.reply.status == 400
    assert "100x64 is not a multiple of 64" in json.dumps(refused.value.reply.body["node_errors"])
    assert server.alive()


# --------------------------------------------------------------------------------------------------
# Every shipped workflow
# --------------------------------------------------------------------------------------------------


def test_run_order_covers_every_workflow():
    assert sorted(RUN_ORDER + RUN_ON_SD21_LAYOUT + RUN_IN_PROCESS) == workflow_names()


@pytest.mark.parametrize("name", RUN_ORDER)
def test_shipped_workflow_runs_and_writes_the_video(server, name):
    prompt = tiny(name)
    run = server.run(prompt)
    expect_success(server, run)
    progress = [(p["value"], p["max"]) for p in run.of_type("progress") if p.get("node") == sampler_id(prompt)]
    assert progress and progress[-1] == (STEPS, STEPS), f"sampler progress events: {progress}"
    (video,) = server.output_files(run.prompt_id)
    assert video.suffix == ".mp4"
    assert video.parent.name == "DynamiCrafter"
    expected_frames = FRAMES - 1 if name.startswith("loop") else FRAMES
    assert video_facts(video) == (expected_frames, WIDTH, HEIGHT)
    if nodes_of(prompt, "LoraLoaderModelOnly"):  # ComfyUI logs the LoRA keys that match no weight
        assert "lora key not loaded" not in server.log_text(), server.log_tail()


# --------------------------------------------------------------------------------------------------
# Interrupt
# --------------------------------------------------------------------------------------------------


def test_interrupt_stops_sampling_and_the_next_prompt_runs(server):
    """Interrupts the loop graph (its conditioning is cached from the last workflow test) after one step."""
    long_run = tiny("loop_512", steps=400)
    run = server.run(long_run, interrupt_at_progress=1)
    assert run.outcome == "execution_interrupted", f"{run.outcome}\n{server.log_tail()}"
    (interrupted,) = run.of_type("execution_interrupted")
    assert interrupted["node_type"] == "DynamiCrafterSampler"
    steps_done = [p["value"] for p in run.of_type("progress") if p.get("node") == sampler_id(long_run)]
    assert steps_done and max(steps_done) < 400
    assert server.history(run.prompt_id)["status"]["completed"] is False

    following = set_input(tiny("loop_512"), "DynamiCrafterSampler", seed=7)
    after = server.run(following)
    expect_success(server, after)
    (video,) = server.output_files(after.prompt_id)
    assert video_facts(video) == (FRAMES - 1, WIDTH, HEIGHT)


@pytest.mark.parametrize("name", RUN_ON_SD21_LAYOUT)
def test_controlnet_workflow_runs_on_an_sd21_wide_checkpoint(server, name):
    """The stock ControlNet nodes on a DynamiCrafter with SD 2.1's widths; one hint picture for every frame."""
    prompt = tiny(name, ckpt_name=SD21_LAYOUT)
    run = server.run(prompt)
    expect_success(server, run)
    executed = {m["node"] for m in run.of_type("executing") if m.get("node")}
    (apply,) = [k for k, n in prompt.items() if n["class_type"] == "ControlNetApplyAdvanced"]
    assert apply in executed
    (video,) = server.output_files(run.prompt_id)
    assert video_facts(video) == (FRAMES, WIDTH, HEIGHT)
