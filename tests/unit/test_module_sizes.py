"""Small modules with one job each: no Python module of the pack, its scripts, workflow generator or bench
is over 400 lines (the style guide's limit; split by job, not by line count, when one grows)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("director", "dynamicrafter", "dynamicrafter_batch", "nodes", "scripts", "workflows", "bench")
LIMIT = 400


def test_no_module_is_over_the_limit():
    modules = [path for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(modules) > 50, "the folders hold the project's modules"
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines()) for path in modules}
    too_long = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert not too_long, f"modules over {LIMIT} lines: {too_long}"
