"""Load another test module by path (test files cannot import each other under --import-mode=importlib)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def load_by_path(name: str, path: Path) -> types.ModuleType:
    """Import ``path`` once under ``name`` and return it; later calls return the same module."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
