"""The workflow generator reads the nodes' own schemas: an input renamed in a node's file reaches every generated
workflow (both formats, the note) and the README's node list, and a workflow that still sets the old name fails
with a message naming it."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json

import pytest

from support import workflow_checks as W


@pytest.fixture
def generator(comfy_host):
    module = W.load_generator()
    module.node_types.cache_clear()
    yield module
    module.node_types.cache_clear()


def _with_id(spec, new: str):
    """A copy of an input under another name (node modules share input objects between nodes)."""
    spec = copy.copy(spec)
    spec.id = new
    return spec


def rename_input(monkeypatch, node_class, old: str, new: str) -> None:
    """Make the node's own define_schema call its input ``old`` ``new``, as an edit of the node's file would."""
    define = node_class.define_schema

    def renamed(cls):
        schema = define()
        schema.inputs = [_with_id(spec, new) if spec.id == old else spec for spec in schema.inputs]
        return schema

    monkeypatch.setattr(node_class, "define_schema", classmethod(renamed))


def sampler_inputs(files: dict[str, str], name: str) -> dict:
    prompt = json.loads(files[f"api/{name}.json"])
    (inputs,) = [n["inputs"] for n in prompt.values() if n["class_type"] == "DynamiCrafterSampler"]
    return inputs


def sampler_inputs_line(readme: str) -> str:
    """The README's inputs line of the DynamiCrafter Sampler."""
    lines = readme.splitlines()
    return lines[lines.index(next(line for line in lines if "(`DynamiCrafterSampler`)" in line)) + 1]


def sampler_note(files: dict[str, str], name: str) -> str:
    """The note's section about the workflow's DynamiCrafter Sampler."""
    ui = json.loads(files[f"{name}.json"])
    note = next(n for n in ui["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    return note.split("**DynamiCrafter Sampler**", 1)[1].split("\n\n", 1)[0]


def test_a_renamed_input_reaches_the_workflows_and_the_readme(comfy_host, generator, monkeypatch):
    before_files, before_readme = generator.json_files(), generator.readme_text()
    assert sampler_inputs(before_files, "image_to_video_512")["eta"] == 1.0
    assert "`eta`" in sampler_inputs_line(before_readme)

    rename_input(monkeypatch, comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterSampler"], "eta", "noise_eta")
    generator.node_types.cache_clear()
    files, readme = generator.json_files(), generator.readme_text()

    for name in ("image_to_video_256", "interpolation_512", "tooncrafter_512", "photo_to_film"):
        inputs = sampler_inputs(files, name)
        assert "eta" not in inputs and inputs["noise_eta"] == 1.0, name
        assert "- **noise_eta** (`1.0`): DDIM eta" in sampler_note(files, name), name
        assert "- **eta**" not in sampler_note(files, name), name
    assert "`noise_eta`" in sampler_inputs_line(readme) and "`eta`" not in sampler_inputs_line(readme)
    assert readme.replace("`noise_eta`", "`eta`", 1) == before_readme
    assert generator.stale_files(), "--check must report the workflows and README as out of date"


def test_a_workflow_setting_a_vanished_input_names_it(comfy_host, generator, monkeypatch):
    rename_input(monkeypatch, comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterImageToVideo"], "width", "video_width")
    generator.node_types.cache_clear()
    with pytest.raises(ValueError, match=r"DynamiCrafterImageToVideo\) has no input width"):
        generator.json_files()


def test_every_widget_of_the_pack_has_help(generator):
    missing = [
        (node_id, name)
        for node_id, spec in generator.node_types().items()
        if spec.ours
        for name in spec.widgets
        if not spec.help.get(name)
    ]
    assert not missing, f"inputs without a tooltip (the workflow notes are written from them): {missing}"


def test_the_readme_variant_table_follows_the_variant_table(generator, monkeypatch):
    readme = importlib.import_module(f"{generator.PACKAGE}.readme")
    config = importlib.import_module(f"{generator.PACKAGE}.host").variant_config()
    row = "| 512_interp | 512 x 320 | frames per second (smaller = more motion, 5-30) | {} |"
    assert row.format(5) in readme.variant_table()
    monkeypatch.setitem(config.VARIANTS, "512_interp", dataclasses.replace(config.VARIANTS["512_interp"], default_fs=7))
    assert row.format(7) in readme.variant_table() and row.format(5) not in readme.variant_table()
