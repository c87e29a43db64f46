"""Every generated file (workflows in both formats, pictures, the README's node list) and the command line."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from .blueprints import BLUEPRINTS, blueprint_file
from .catalog import workflows
from .formats import api_format, ui_format
from .note import INPUT_DIR, note_text
from .pictures import PICTURES, encode_picture, thumbnail
from .readme import with_generated_sections
from .videos import VIDEOS, encode_video

WORKFLOWS_DIR = Path(__file__).resolve().parents[1]
ROOT = WORKFLOWS_DIR.parent
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
API_DIR = "api"
SUBGRAPHS_DIR = "../subgraphs"
"""The pack's subgraph blueprints (``<pack>/subgraphs``, served by ComfyUI 0.33.0 at ``/global_subgraphs``)."""

log = logging.getLogger("workflows.generate")


def pack_id() -> str:
    """The pack's Comfy Registry id (``[project].name``), written as ``properties.cnr_id`` of its nodes."""
    text = PYPROJECT.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the first `name = "..."` of the [project] table
        match = re.search(r'^\[project\][^\[]*?^name\s*=\s*"([^"]+)"', text, re.MULTILINE | re.DOTALL)
        if match is None:
            raise ValueError(f"no [project] name in {PYPROJECT}") from None
        return match.group(1)
    return tomllib.loads(text)["project"]["name"]


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def json_files() -> dict[str, str]:
    """Path relative to ``workflows/`` -> text of every generated JSON file."""
    cnr_id = pack_id()
    files: dict[str, str] = {}
    ui_forms: dict[str, dict[str, Any]] = {}
    for workflow in workflows():
        ui_forms[workflow.name] = ui_format(workflow, cnr_id, note_text)
        files[f"{workflow.name}.json"] = to_json(ui_forms[workflow.name])
        files[f"{API_DIR}/{workflow.name}.json"] = to_json(api_format(workflow))
    for blueprint in BLUEPRINTS:
        files[f"{SUBGRAPHS_DIR}/{blueprint.name}.json"] = to_json(
            blueprint_file(blueprint, ui_forms[blueprint.workflow], cnr_id)
        )
    return files


def picture_files() -> dict[str, np.ndarray]:
    """Path relative to ``workflows/`` -> pixels of every generated picture (inputs as PNG, thumbnails as JPEG)."""
    files = {f"{INPUT_DIR}/{name}": draw() for name, draw in PICTURES.items()}
    files.update({f"{workflow.name}.jpg": thumbnail(workflow) for workflow in workflows()})
    return files


def video_files() -> dict[str, np.ndarray]:
    """Path relative to ``workflows/`` -> frames of every example video (written as MP4)."""
    return {f"{INPUT_DIR}/{name}": draw() for name, draw in VIDEOS.items()}


def readme_text(readme: Path = README) -> str:
    return with_generated_sections(readme.read_text(encoding="utf-8"))


def write_all(root: Path = WORKFLOWS_DIR, readme: Path = README) -> list[Path]:
    written = []
    for relative, text in json_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for relative, pixels in picture_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_picture(relative, pixels))
        written.append(path)
    for relative, frames in video_files().items():
        path = root / relative
        path.write_bytes(encode_video(frames))
        written.append(path)
    readme.write_text(readme_text(readme), encoding="utf-8")
    return [*written, readme]


def stale_files(root: Path = WORKFLOWS_DIR, readme: Path = README) -> list[str]:
    """Generated text files whose committed text differs (pictures and videos are compared by pixels in the
    tests)."""
    stale = []
    for relative, text in json_files().items():
        path = root / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(relative)
    stale += [relative for relative in [*picture_files(), *video_files()] if not (root / relative).is_file()]
    if readme.read_text(encoding="utf-8") != readme_text(readme):
        stale.append(f"../{readme.name}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the pack's example workflows, their pictures and the "
        "README's node list from the nodes' schemas."
    )
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = stale_files()
        for relative in stale:
            log.error("out of date: workflows/%s (run python workflows/generate.py)", relative)
        return 1 if stale else 0
    for path in write_all():
        log.info("wrote %s", path.relative_to(ROOT))
    return 0
