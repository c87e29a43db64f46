"""Analytic-Init (the CIL paper's start noise) and the CIL checkpoint layout against the REFERENCE code
(thu-ml/cond-image-leakage; goldens and layout digests in tests/data/parity_cil)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.analytic_init import analytic_start, statistics_from_state_dict
from dynamicrafter.schedule import ddim_timesteps, make_schedule
from support.modules import load_by_path
from support.parity_data import FixtureSet, relative_error, relative_l2
from support.reference_data import PARITY_SMALL_512, manifest_path

CONTROLS = load_by_path("_cil_parity_controls", Path(__file__).resolve().parent / "test_parity_controls.py")

GOLDENS = Path(__file__).resolve().parent.parent / "data" / "parity_cil"
CONFIG = json.loads((GOLDENS / "config.json").read_text())
LAYOUT = json.loads((GOLDENS / "cil_layout.json").read_text())
TOL = 1e-4
RUNS = [(run["M"], run["eta"]) for run in CONFIG["runs"]]


@pytest.fixture(scope="module")
def goldens() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "analytic.safetensors"))


@pytest.fixture(scope="module")
def network():
    fixture = FixtureSet(PARITY_SMALL_512)
    unet, resampler = fixture.networks()
    return fixture, unet, resampler


def _start(network, g, m: int) -> torch.Tensor:
    schedule = make_schedule(network[0].schedule_config())
    return analytic_start(schedule, statistics_from_state_dict(g, "small statistics"), m, g["eps"])


def _sample(network, g, m: int, eta: float, x_T: torch.Tensor) -> torch.Tensor:
    """The reference run's settings are the control goldens' (checked below): their sampler loop serves both."""
    return CONTROLS.run(network, {**g, "x_start": x_T}, eta, span=m)


def test_goldens_record_their_provenance():
    assert CONFIG["sampling"] == CONTROLS.CONFIG["sampling"]
    assert CONFIG["source"] == LAYOUT["source"] | {"git_blob_sha1": CONFIG["source"]["git_blob_sha1"]}
    assert CONFIG["source"]["repo"] == "thu-ml/cond-image-leakage"
    assert "scripts/evaluation/inference.py" in CONFIG["source"]["git_blob_sha1"]


@pytest.mark.parametrize("m", sorted({m for m, _ in RUNS}))
def test_analytic_start_noise_equals_the_reference(network, goldens, m):
    ours = _start(network, goldens, m)
    assert relative_error(ours, goldens[f"M{m}.x_T"]) < 1e-6
    if m == 1000:  # zero terminal SNR: alpha_bar[999] = 0, so at M = 1000 the start is plain noise
        assert torch.equal(goldens[f"M{m}.x_T"], goldens["eps"])
    else:
        assert relative_l2(goldens["eps"], goldens[f"M{m}.x_T"]) > 100 * TOL


@pytest.mark.parametrize("m", sorted({m for m, _ in RUNS}))
def test_reference_ddpm_from_is_the_partial_denoise_grid(goldens, m):
    s = CONFIG["sampling"]
    assert torch.equal(ddim_timesteps(s["steps"], s["spacing"], m), goldens[f"M{m}.timesteps"])


@pytest.mark.parametrize(("m", "eta"), RUNS)
def test_analytic_init_run_equals_the_reference(network, goldens, single_thread, m, eta):
    expected = goldens[f"M{m}.eta{eta:g}.final"]
    ours = _sample(network, goldens, m, eta, _start(network, goldens, m))
    assert relative_l2(ours, expected) < TOL and relative_error(ours, expected) < TOL
    if m != 1000:  # the start noise matters: plain noise at the same step is far from it
        assert relative_l2(_sample(network, goldens, m, eta, goldens["eps"]), expected) > 100 * TOL


def _digest(keys: dict[str, list[int]]) -> str:
    text = "".join(f"{k}:{'x'.join(map(str, s))}\n" for k, s in keys.items())
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("resolution", ["512", "1024"])
def test_cil_checkpoint_layout_is_the_dynamicrafter_manifest(resolution):
    """The reference CIL model's full-size keys and shapes (digest made on meta tensors by the generator)
    equal the DynamiCrafter manifest that the loader tests use, key for key, in order."""
    record = LAYOUT["layouts"][resolution]
    manifest = json.loads(manifest_path(resolution).read_text())
    assert record["n_keys"] == manifest["n_keys"] == len(manifest["keys"])
    assert record["sha256_key_shape_lines"] == _digest(manifest["keys"])
    assert record["equal_to_manifest"] == manifest_path(resolution).name
