"""Packaging: pyproject.toml for the Comfy Registry, requirements.txt without torch, the licence, and
requirements.txt installing into a fresh environment that already has torch without touching it."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
TORCH_VERSION = "2.13.0"
TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}
CACHE = ROOT / ".cache" / "packaging"


def _requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def _requirement_names(path: Path) -> list[str]:
    return [
        re.split(r"[\s<>=!~\[;@]", line, maxsplit=1)[0].lower().replace("_", "-") for line in _requirement_lines(path)
    ]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_registry_fields(pyproject):
    project, comfy = pyproject["project"], pyproject["tool"]["comfy"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]{0,99}", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "version must be semver MAJOR.MINOR.PATCH"
    assert project["description"]
    assert project["urls"]["Repository"].startswith("https://")
    assert project["license"] == {"file": "LICENSE"}
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert comfy[key], f"[tool.comfy] {key} is empty"
    assert comfy["Icon"].startswith("https://")
    assert "director" in project["optional-dependencies"]


def test_classifiers_are_ones_the_registry_knows(pyproject):
    known = re.compile(
        r"Operating System :: (Microsoft|POSIX|MacOS|OS Independent)|"
        r"Environment :: (GPU :: (NVIDIA CUDA|AMD ROCm|Intel Arc|Apple Metal)|NPU :: Huawei Ascend)"
    )
    assert all(known.fullmatch(c) for c in pyproject["project"].get("classifiers", []))


def test_licence_is_apache_2():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_requirements_list_no_torch_and_mirror_the_project(pyproject):
    names = _requirement_names(ROOT / "requirements.txt")
    assert names, "requirements.txt is empty"
    assert not TORCH_FAMILY & set(names), "requirements.txt must never list torch/torchvision/torchaudio"
    declared = [
        re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower().replace("_", "-")
        for d in pyproject["project"]["dependencies"]
    ]
    assert sorted(declared) == sorted(names)
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        assert not TORCH_FAMILY & {re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower() for d in extra}


def test_the_test_environment_installs_the_cluster_extras_engine(pyproject):
    """requirements-cluster.txt (what scripts/test installs for the cluster tests) is the cluster extra's Ray."""
    wanted = {str(Requirement(line)) for line in _requirement_lines(ROOT / "requirements-cluster.txt")}
    extra = {str(Requirement(d)) for d in pyproject["project"]["optional-dependencies"]["cluster"]}
    assert wanted and wanted <= extra and all(Requirement(r).name == "ray" for r in wanted)


def test_console_script_points_at_the_batch_client(pyproject):
    target = pyproject["project"]["scripts"]["dynamicrafter-batch"]
    module, _, function = target.partition(":")
    package, _, name = module.partition(".")
    setuptools = pyproject["tool"]["setuptools"]
    assert package in setuptools["packages"]
    folder = ROOT / setuptools.get("package-dir", {}).get(package, package)
    source = (folder / f"{name}.py").read_text(encoding="utf-8")
    assert re.search(rf"^def {function}\(", source, re.MULTILINE)
    # The pack's own packages must never be installed top-level (`nodes` would shadow ComfyUI's nodes.py).
    assert not {"nodes", "dynamicrafter"} & set(setuptools["packages"])


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_carries_the_console_script_only(tmp_path):
    """``pip wheel`` of the project: the batch client under its own package name, nothing of the pack."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "dynamicrafter_batch", source / "dynamicrafter_batch", ignore=shutil.ignore_patterns("__pycache__")
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ]
    )
    wheel = next((tmp_path / "dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dynamicrafter_batch/client.py" in names
    assert not [n for n in names if n.startswith(("nodes/", "dynamicrafter/"))]
    assert "dynamicrafter-batch = dynamicrafter_batch.client:main" in entry_points
    # Installed, the entry point's module imports as a package member, away from the checkout.
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)])
    code = "import sys; from dynamicrafter_batch.client import main; sys.exit(main(['--help']))"
    usage = _run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert "dynamicrafter-batch" in usage.stdout and "--csv" in usage.stdout


def _link_distribution(name: str, site: Path, done: set[str]) -> None:
    """Put the installed distribution ``name`` and everything it requires into ``site`` (hard links of the
    files its RECORD lists, copies across file systems): pip then finds it installed, as in ComfyUI's venv."""
    dist = importlib.metadata.distribution(name)
    key = canonicalize_name(dist.metadata["Name"])
    if key in done:
        return
    done.add(key)
    source_site = Path(dist.locate_file("")).resolve()
    for file in dist.files or []:
        source = Path(dist.locate_file(file)).resolve()
        if not source.is_file() or not source.is_relative_to(source_site):  # console scripts live outside
            continue
        target = site / source.relative_to(source_site)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    for requirement in map(Requirement, dist.requires or []):
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            _link_distribution(requirement.name, site, done)


def _fresh_venv() -> Path:
    """A new venv holding only torch (this test environment's own torch==2.13.0, the CPU build) and what torch
    requires: the environment ComfyUI users install the pack into."""
    venv = CACHE / "fresh-venv"
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    _link_distribution("torch", site, set())
    return python


@pytest.mark.timeout(2400)
def test_requirements_install_without_changing_torch():
    python = _fresh_venv()
    try:
        version = "import torch; print(torch.__version__)"
        before = _run([str(python), "-c", version]).stdout.strip()
        assert before.startswith(TORCH_VERSION)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        requirements = str(ROOT / "requirements.txt")
        _run([str(python), "-m", "pip", "install", "-q", "-r", requirements], env=env, timeout=1800)
        after = _run([str(python), "-c", version]).stdout.strip()
        assert after == before, f"installing requirements.txt changed torch from {before} to {after}"
        _run([str(python), "-c", "import einops, safetensors, kornia, huggingface_hub, av"])
    finally:
        shutil.rmtree(python.parents[1], ignore_errors=True)


RUNTIME_CODE = ("__init__.py", "nodes", "dynamicrafter")
"""What ComfyUI imports when it loads the pack (the batch client and the generators run on their own)."""
FLAGGED_CALLS = {
    "eval(": r"(?<![.\w])eval\(",
    "exec(": r"(?<![.\w])exec\(",
    "os.system": r"\bos\.system\(",
    "shell=True": r"shell\s*=\s*True",
    "subprocess": r"\bimport subprocess\b|\bsubprocess\.",
    "pip at run time": r"\bpip\.main\(|\[\s*sys\.executable\s*,\s*['\"]-m['\"]\s*,\s*['\"]pip",
    "torch.load without weights_only": r"torch\.load\((?![^)]*weights_only\s*=\s*True)",
    "pickle": r"\bpickle\.loads?\(",
}
"""Calls the Comfy Registry's security scan and its standards flag in a node pack's code."""


def test_registry_name_follows_the_specification(pyproject):
    name = pyproject["project"]["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name)
    assert not re.search(r"[._-]{2}", name), "no consecutive special characters"


def test_requires_comfyui_is_the_oldest_release_the_tests_run(pyproject):
    env = (ROOT / "scripts" / "lib" / "env.sh").read_text(encoding="utf-8")
    oldest = re.search(r"^COMFYUI_OLDEST=(\S+)$", env, re.MULTILINE).group(1)
    assert pyproject["tool"]["comfy"]["requires-comfyui"] == f">={oldest}"


def test_runtime_code_makes_no_call_the_registry_flags():
    files = [ROOT / RUNTIME_CODE[0], *(p for d in RUNTIME_CODE[1:] for p in (ROOT / d).rglob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}: {what}"
        for path in files
        for what, pattern in FLAGGED_CALLS.items()
        if re.search(pattern, path.read_text(encoding="utf-8"))
    ]
    assert len(files) > 30 and found == []
