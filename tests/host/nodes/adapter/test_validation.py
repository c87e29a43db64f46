"""Every widget of every pack node refuses out-of-range, NaN/infinite, unknown-choice and over-long values when
queued (the host's own check for combos and INTs, the pack's for the rest) and again when the node runs; video
sizes are checked against the memory limit before anything is allocated; odd pictures are made RGB or refused.

The host's own check stops at the first wrong value of a node only for inputs the node does not validate
itself, so the pack must hold the host's bounds for every input it does validate (issue 12).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.host

PLACEHOLDER = "dynamicrafter_placeholder_512.safetensors"
"""An empty file: enough for the loaders' file lists at queue time (nothing here loads it)."""
CAMERA_FILE = "limits_orbit.txt"
"""A good camera path in the input folder, the Load Camera File node's value here (other tests put bad ones
there too, and the node reads its file when queued)."""


@pytest.fixture(scope="module")
def pack(comfy_host: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("limit-models")
    (folder / PLACEHOLDER).write_bytes(b"")
    for kind in ("checkpoints", "diffusion_models"):
        comfy_host.folder_paths.add_model_folder_path(kind, str(folder), is_default=True)
    comfy_host.load_builtin_extras()
    from dynamicrafter.camera import preset
    from dynamicrafter.camera.path import write_realestate10k

    Path(comfy_host.folder_paths.get_input_directory(), CAMERA_FILE).write_text(
        write_realestate10k(preset("orbit left", 40))
    )
    validation = comfy_host.import_pack_module("nodes.adapter.validation")
    checked = [cls for cls in comfy_host.pack_nodes if issubclass(cls, validation.CheckedNode)]
    return {"validation": validation, "checked": checked, "all": comfy_host.pack_nodes}


def node_id(cls: type) -> str:
    return cls.GET_SCHEMA().node_id


def kind(spec: Any) -> str | None:
    """'Int', 'Float', 'Combo', 'String' or 'Boolean' for a widget input, else None."""
    from comfy_api.latest import io

    for name in ("Int", "Float", "Combo", "String", "Boolean"):
        if isinstance(spec, getattr(io, name).Input):
            return name
    return None


def widgets(cls: type, validation: Any) -> list[Any]:
    """The node's widget inputs (numbers, choices, text, switches)."""
    return [spec for spec in cls.GET_SCHEMA().inputs if kind(spec)]


def good_value(spec: Any) -> Any:
    if spec.id == "camera_file":
        return CAMERA_FILE
    if getattr(spec, "options", None) is not None:
        return spec.default if spec.default is not None else (spec.options or [None])[0]
    return spec.default if spec.default is not None else (spec.min if getattr(spec, "min", None) is not None else 1)


def queue_errors(comfy_host: Any, class_type: str, values: dict[str, Any]) -> str:
    """The host's queue-time errors of a prompt holding only this node (links left out), as one text."""
    prompt = {"1": {"class_type": class_type, "inputs": dict(values)}}
    _, errors, _ = asyncio.run(comfy_host.execution.validate_inputs(uuid.uuid4().hex, prompt, "1", {}))
    return "\n".join(f"{e['message']}: {e['details']}" for e in errors)


def bad_values(spec: Any) -> Iterator[tuple[Any, str]]:
    """(value, fragment of the expected message) for one widget."""
    widget = kind(spec)
    if widget in ("Int", "Float"):
        if spec.min is not None:
            yield spec.min - 1, "below its minimum"
        if spec.max is not None:
            yield spec.max + 1, "above its maximum"
    if widget == "Float":
        yield math.nan, "not a number"
        yield math.inf, "not a number"
        yield -math.inf, "not a number"
    if widget == "Combo" and spec.options:
        yield "evil", "Value not in list"  # the host's own check since 0.8.0 (the pack's where it needs the value)
    if widget == "String":
        yield "x" * 100_001, "characters"


def test_every_pack_node_is_a_checked_node(pack: dict[str, Any]) -> None:
    assert pack["all"] and sorted(map(node_id, pack["all"])) == sorted(map(node_id, pack["checked"]))


def test_defaults_pass_the_queue_check(comfy_host: Any, pack: dict[str, Any]) -> None:
    for cls in pack["checked"]:
        values = {spec.id: good_value(spec) for spec in widgets(cls, pack["validation"])}
        errors = queue_errors(comfy_host, node_id(cls), values)
        assert "Custom validation failed" not in errors, f"{node_id(cls)}: {errors}"


def test_every_bad_widget_value_is_refused_when_queued(comfy_host: Any, pack: dict[str, Any]) -> None:
    tried = 0
    for cls in pack["checked"]:
        specs = widgets(cls, pack["validation"])
        defaults = {spec.id: good_value(spec) for spec in specs}
        for spec in specs:
            for bad, fragment in bad_values(spec):
                errors = queue_errors(comfy_host, node_id(cls), {**defaults, spec.id: bad})
                refused = (fragment, "smaller than min", "bigger than max", "is not one of its choices")
                assert spec.id in errors and any(words in errors for words in refused), (
                    f"{node_id(cls)}.{spec.id} = {bad!r:.40} was not refused: {errors[:600]}"
                )
                tried += 1
    assert tried > 80


@pytest.mark.parametrize(
    ("node", "values", "fragment"),
    [
        ("DynamiCrafterImageToVideo", {"width": 65536, "height": 65536}, "width = 65536 is above its maximum 4096"),
        ("DynamiCrafterImageToVideo", {"width": 8192}, "width = 8192 is above its maximum 4096"),
        ("DynamiCrafterImageToVideo", {"width": 100}, "100x320 is not a multiple of 64"),
        (
            "DynamiCrafterImageToVideo",
            {"width": 4096, "height": 4096, "frames": 64, "batch_size": 16},
            "DYNAMICRAFTER_MAX_RUN_GB",
        ),
        ("DynamiCrafterInterpolation", {"width": 2048, "height": 2048, "frames": 64, "batch_size": 4}, "GiB"),
        ("DynamiCrafterLongVideo", {"width": 4096, "height": 4096, "total_frames": 4096}, "4096 frames out"),
        ("DynamiCrafterSampler", {"cfg": math.nan}, "cfg is nan, not a number"),
        ("DynamiCrafterSampler", {"eta": math.inf}, "eta is inf, not a number"),
        ("DynamiCrafterSampler", {"guidance_rescale": math.nan}, "guidance_rescale is nan"),
        ("DynamiCrafterSampler", {"dynamic_rescale": "evil"}, "Value not in list: dynamic_rescale: 'evil' not in"),
        ("DynamiCrafterImageToVideo", {"fit": "evil"}, "Value not in list: fit: 'evil' not in ['crop', 'pad']"),
        ("DynamiCrafterCheckpointLoader", {"weight_dtype": "bogus"}, "weight_dtype: 'bogus' not in"),
        ("DynamiCrafterLoadModel", {"model_name": "../../etc/passwd"}, "model_name: '../../etc/passwd' not in"),
    ],
)
def test_reported_cases_are_refused_when_queued(
    comfy_host: Any, pack: dict[str, Any], node: str, values: dict[str, Any], fragment: str
) -> None:
    cls = comfy_host.nodes.NODE_CLASS_MAPPINGS[node]
    defaults = {spec.id: good_value(spec) for spec in widgets(cls, pack["validation"])}
    errors = queue_errors(comfy_host, node, {**defaults, **values})
    assert fragment in errors, errors


def test_memory_limit_is_the_administrators(
    comfy_host: Any, pack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterImageToVideo"]
    defaults = {spec.id: good_value(spec) for spec in widgets(cls, pack["validation"])}
    four_1024 = {**defaults, "width": 1024, "height": 576, "frames": 16, "batch_size": 4}
    assert "Custom validation failed" not in queue_errors(comfy_host, "DynamiCrafterImageToVideo", four_1024)
    monkeypatch.setenv("DYNAMICRAFTER_MAX_RUN_GB", "8")
    errors = queue_errors(comfy_host, "DynamiCrafterImageToVideo", four_1024)
    assert "would need about 22.85 GiB, more than the 8 GiB this server allows" in errors


def test_values_wired_from_other_nodes_are_checked_when_the_node_runs(comfy_host: Any, pack: dict[str, Any]) -> None:
    """A value from a link is unknown at queue time: the node refuses it when it runs, before using anything."""
    rescale = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterGuidanceRescale"]
    with pytest.raises(pack["validation"].InputError, match="guidance_rescale is nan, not a number"):
        rescale.execute(object(), math.nan)
    sampler = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterSampler"]
    with pytest.raises(pack["validation"].InputError, match="spacing = 'evil' is not one of its choices"):
        sampler.execute(object(), None, None, {}, 1, 5, 7.5, 1.0, -1.0, "evil", "auto")
    loader = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterCheckpointLoader"]
    with pytest.raises(pack["validation"].InputError, match="weight_dtype = 'bogus'"):
        loader.execute(ckpt_name=PLACEHOLDER, variant="auto", weight_dtype="bogus")


def test_wired_sizes_are_checked_before_anything_is_allocated(comfy_host: Any, pack: dict[str, Any]) -> None:
    node = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterImageToVideo"]
    picture = torch.rand(1, 8, 8, 3)
    with pytest.raises(pack["validation"].InputError, match="above its maximum 4096"):
        node.execute(None, None, object(), object(), picture, 65536, 65536, 16, 0, 1, "crop")
    with pytest.raises(pack["validation"].InputError, match="GiB"):
        node.execute(None, None, object(), object(), picture, 4096, 4096, 64, 0, 16, "crop")


@pytest.fixture
def captured_pictures(comfy_host: Any, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The first picture the image-to-video node hands its conditioning builder."""
    conditioning = comfy_host.import_pack_module("nodes.conditioning")
    seen: list[torch.Tensor] = []

    def capture(positive, negative, vae, clip_vision, first, *rest, **kwargs):
        seen.append(first)
        return None, None, None

    monkeypatch.setattr(conditioning, "build_conditioning", capture)
    return seen


@pytest.mark.parametrize(("channels", "expected"), [(1, "grey"), (2, "grey"), (3, "rgb"), (4, "rgb")])
def test_grey_and_rgba_pictures_become_rgb(
    comfy_host: Any, pack: dict[str, Any], captured_pictures: list, channels: int, expected: str
) -> None:
    node = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterImageToVideo"]
    picture = torch.rand(2, 24, 40, channels)
    node.execute(None, None, object(), object(), picture, 512, 320, 16, 0, 1, "crop")
    (seen,) = captured_pictures
    assert seen.shape == (2, 24, 40, 3)
    if expected == "grey":
        for c in range(3):
            torch.testing.assert_close(seen[..., c], picture[..., 0])
    else:
        torch.testing.assert_close(seen, picture[..., :3])


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ((1, 0, 0, 3), "is empty"),
        ((0, 32, 32, 3), "is empty"),
        ((1, 8, 8, 5), "5 channels"),
        ((8, 8, 3), "IMAGE batch"),
    ],
)
def test_odd_pictures_are_refused_with_a_clear_message(
    comfy_host: Any, pack: dict[str, Any], captured_pictures: list, shape: tuple, fragment: str
) -> None:
    node = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterImageToVideo"]
    with pytest.raises(pack["validation"].InputError, match=fragment) as raised:
        node.execute(None, None, object(), object(), torch.rand(*shape), 512, 320, 16, 0, 1, "crop")
    assert "image" in str(raised.value) and not captured_pictures


def test_nan_picture_is_refused(comfy_host: Any, pack: dict[str, Any], captured_pictures: list) -> None:
    node = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterImageToVideo"]
    picture = torch.rand(1, 8, 8, 3)
    picture[0, 0, 0, 0] = math.nan
    with pytest.raises(pack["validation"].InputError, match="NaN or infinite"):
        node.execute(None, None, object(), object(), picture, 512, 320, 16, 0, 1, "crop")


# --------------------------------------------------------------------------------------------------
# Through POST /prompt on a real server: the reported cases are refused, and the server goes on serving
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(comfy_host: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from support.comfy_server import WORKFLOW_INPUTS, ComfyServer, ServerSetup

    root = tmp_path_factory.mktemp("limits-server")
    setup = ServerSetup.create(root)
    (setup.models / "checkpoints" / PLACEHOLDER).write_bytes(b"")
    for picture in WORKFLOW_INPUTS.glob("*.png"):
        (setup.input_dir / picture.name).write_bytes(picture.read_bytes())
    server = ComfyServer(comfy_host.comfy_dir, setup, root / "server.log")
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def shipped_i2v(**changes: dict[str, Any]) -> dict[str, Any]:
    """The shipped 512 image-to-video API workflow on the placeholder file, with ``changes`` per class_type."""
    from support.comfy_server import load_api_workflow, shrink_workflow

    prompt = shrink_workflow(load_api_workflow("image_to_video_512"), ckpt_name=PLACEHOLDER, width=512, height=320)
    for node in prompt.values():
        node["inputs"].update(changes.get(node["class_type"], {}))
    return prompt


SERVER_CASES = {
    "size_65536": ({"DynamiCrafterImageToVideo": {"width": 65536, "height": 65536}}, "above its maximum 4096"),
    "size_8192": ({"DynamiCrafterImageToVideo": {"width": 8192}}, "width = 8192 is above its maximum 4096"),
    "memory": (
        {"DynamiCrafterImageToVideo": {"width": 4096, "height": 4096, "frames": 64, "batch_size": 16}},
        "DYNAMICRAFTER_MAX_RUN_GB",
    ),
    "cfg_nan": ({"DynamiCrafterSampler": {"cfg": math.nan}}, "cfg is nan, not a number"),
    "eta_nan": ({"DynamiCrafterSampler": {"eta": math.nan}}, "eta is nan, not a number"),
    "rescale_inf": ({"DynamiCrafterSampler": {"guidance_rescale": math.inf}}, "guidance_rescale is inf"),
    "fit": ({"DynamiCrafterImageToVideo": {"fit": "evil"}}, "fit: 'evil' not in ['crop', 'pad']"),
    "dynamic_rescale": ({"DynamiCrafterSampler": {"dynamic_rescale": "evil"}}, "dynamic_rescale: 'evil' not in"),
    "weight_dtype": ({"DynamiCrafterCheckpointLoader": {"weight_dtype": "bogus"}}, "weight_dtype: 'bogus' not in"),
    "file_outside": (
        {"DynamiCrafterCheckpointLoader": {"ckpt_name": "../../../etc/passwd"}},
        "ckpt_name: '../../../etc/passwd' not in",
    ),
}


@pytest.mark.parametrize("case", list(SERVER_CASES))
def test_reported_case_is_refused_by_the_server(server: Any, case: str) -> None:
    import json

    from support.comfy_server import PromptRejected

    changes, fragment = SERVER_CASES[case]
    with pytest.raises(PromptRejected) as refused:
        server.run(shipped_i2v(**changes), timeout=60)
    reply = refused.value.reply
    assert reply.status == 400
    assert fragment in json.dumps(reply.body["node_errors"]), reply.body
    assert server.alive() and server.get("/system_stats").status == 200


def test_server_runs_the_next_prompt(server: Any) -> None:
    run = server.run(
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        },
        timeout=120,
    )
    assert run.outcome == "execution_success", server.log_tail()
    assert "Traceback" not in server.log_text()
