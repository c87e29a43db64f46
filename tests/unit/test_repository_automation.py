"""The repository's own automation: the GitHub Actions workflows, the Registry metadata and icon, the changelog."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _steps(data: dict) -> list[dict]:
    return [step for job in data["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("name", ["test.yml", "publish.yml"])
def test_workflow_is_valid_github_actions(name):
    data = _workflow(name)
    assert data["name"] and data["on"], f"{name}: a workflow needs a name and triggers"
    assert data["jobs"], f"{name}: no jobs"
    for job_id, job in data["jobs"].items():
        assert isinstance(job.get("runs-on"), str), f"{name}: job {job_id} has no runs-on"
        assert job["steps"], f"{name}: job {job_id} has no steps"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{name}: a step needs exactly one of uses/run: {step}"
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert action.count("/") >= 1 and ref, f"{name}: pin the action's version: {step['uses']}"


def test_tests_run_the_readme_test_command_on_push_and_pull_requests():
    data = _workflow("test.yml")
    assert {"push", "pull_request"} <= set(data["on"])
    assert any(step.get("run", "").strip() == "scripts/test" for step in _steps(data))
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text() and "scripts/test" in (ROOT / "README.md").read_text()


def test_publishing_runs_on_a_version_bump_with_the_registry_token():
    data = _workflow("publish.yml")
    assert data["on"]["push"]["branches"] == ["main"] and data["on"]["push"]["paths"] == ["pyproject.toml"]
    publish = next(step for step in _steps(data) if step.get("uses", "").startswith("Comfy-Org/publish-node-action@"))
    assert publish["with"]["personal_access_token"] == "${{ secrets.REGISTRY_ACCESS_TOKEN }}"
    assert "steps.version.outputs.publish" in publish["if"]
    check = next(step for step in _steps(data) if step.get("id") == "version")
    assert 'tomllib.load(open("pyproject.toml", "rb"))["project"]["version"]' in check["run"]
    owner = data["jobs"]["publish"]["if"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"'{project['tool']['comfy']['PublisherId']}'" in owner


def test_registry_icon_and_changelog():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    icon = project["tool"]["comfy"]["Icon"]
    assert icon.startswith(project["project"]["urls"]["Repository"].replace("github.com", "raw.githubusercontent.com"))
    assert icon.endswith("/main/docs/icon.png")
    with Image.open(ROOT / "docs" / "icon.png") as image:
        assert image.format == "PNG" and image.size[0] == image.size[1] >= 128
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {project['project']['version']}" in changelog
