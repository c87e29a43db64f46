"""The pack's example workflows, each described once in Python and written in both ComfyUI formats.

    python workflows/generate.py          # (re)write every file
    python workflows/generate.py --check  # exit 1 when a committed file differs from the generator's output

Needs ComfyUI importable (``$COMFYUI_DIR``, default ``.cache/comfyui``): widgets, defaults and help come from
the pack's node schemas. Writes, for every workflow ``<name>``:

- ``workflows/<name>.json``: the graph-editor (LiteGraph, "UI") format. ComfyUI lists the JSON files at the
  top of a pack's ``workflows/`` folder in its template browser (``GET /workflow_templates``) and uses
  ``workflows/<name>.jpg`` as the thumbnail.
- ``workflows/api/<name>.json``: the API ("prompt") format for ``POST /prompt`` and batch scripts. It sits
  in a subfolder so that the template browser, which reads only the top of the folder, never lists it.
- ``workflows/inputs/*.png`` and ``*.mp4``: the example pictures and video the workflows load (drawn here, no
  third-party images); copy them into ComfyUI's ``input`` folder, or pick your own in the Load Image / Load Video
  node.

and the node list of ``README.md`` between its markers. The generator itself is the package ``workflows/gen``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GEN = Path(__file__).resolve().parent / "gen"
PACKAGE = "dynamicrafter_workflows"


def _generator():
    """``workflows/gen`` by path: this folder is not a package of the pack, and the script runs from anywhere."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, GEN / "__init__.py", submodule_search_locations=[str(GEN)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


_gen = _generator()
json_files, picture_files, stale_files, write_all, main = (
    _gen.json_files,
    _gen.picture_files,
    _gen.stale_files,
    _gen.write_all,
    _gen.main,
)
node_types, workflows, readme_text, video_files = _gen.node_types, _gen.workflows, _gen.readme_text, _gen.video_files

if __name__ == "__main__":
    sys.exit(main())
