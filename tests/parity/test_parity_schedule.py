"""Schedule arrays and DDIM timesteps against the original's values (schedules.json, buffers)."""

from __future__ import annotations

import json

import pytest
import torch

from dynamicrafter.schedule import ddim_parameters, ddim_timesteps, make_schedule
from support.parity_data import fixture_sets
from support.reference_data import parity_dir

PARITY = parity_dir()
SETS = fixture_sets(PARITY)


def _schedules() -> dict:
    return json.loads((PARITY / "schedules.json").read_text())["variants"]


@pytest.mark.parametrize("fixture_set", SETS, ids=lambda s: s.name)
def test_buffers_equal_checkpoint_buffers(fixture_set):
    ours = make_schedule(fixture_set.schedule_config()).buffers()
    theirs = fixture_set.tensors("buffers")
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("fixture_set", SETS, ids=lambda s: s.name)
def test_schedule_and_ddim_parameters(fixture_set):
    reference = _schedules()[fixture_set.name]
    schedule = make_schedule(fixture_set.schedule_config())
    torch.testing.assert_close(schedule.alphas_cumprod, torch.tensor(reference["alphas_cumprod"]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(schedule.betas, torch.tensor(reference["betas"]), rtol=1e-6, atol=1e-7)
    if "scale_arr" in reference:
        torch.testing.assert_close(schedule.scale_arr, torch.tensor(reference["scale_arr"]), rtol=1e-6, atol=1e-7)
    assert reference["ddim"], "no DDIM lists in schedules.json"
    for key, ddim in reference["ddim"].items():
        spacing, steps = key.split("/S=")
        params = ddim_parameters(schedule, int(steps), spacing, eta=1.0)
        assert params.timesteps.tolist() == ddim["timesteps_ascending"], key
        assert len(params.timesteps) == ddim["num_steps_run"], key
        torch.testing.assert_close(params.alphas, torch.tensor(ddim["alphas"]), rtol=1e-6, atol=1e-7, msg=key)
        torch.testing.assert_close(params.alphas_prev, torch.tensor(ddim["alphas_prev"]), rtol=1e-6, atol=1e-7, msg=key)
        torch.testing.assert_close(params.sigmas, torch.tensor(ddim["sigmas_eta1"]), rtol=1e-5, atol=1e-7, msg=key)
        if "scale_arr_at_timesteps" in ddim:
            torch.testing.assert_close(params.scale, torch.tensor(ddim["scale_arr_at_timesteps"]), rtol=1e-6, atol=1e-7)


def test_spec_reference_values():
    """Numbers quoted in the spec (section 5.1, 7.1) for the released schedules."""
    from dynamicrafter.config import VARIANTS

    v = make_schedule(VARIANTS["512"].schedule)
    e = make_schedule(VARIANTS["256"].schedule)
    assert v.alphas_cumprod[999] == 0 and float(v.betas[999]) == 1.0
    assert abs(float(e.alphas_cumprod[999]) - 0.0046601) < 1e-6
    assert abs(float(v.alphas_cumprod[979]) - 8.5788e-5) < 1e-8
    assert ddim_timesteps(50, "uniform").tolist()[:2] == [1, 21] and ddim_timesteps(50, "uniform")[-1] == 981
    assert ddim_timesteps(50, "uniform_trailing")[-1] == 999 and ddim_timesteps(50, "uniform_trailing")[0] == 19
    assert len(ddim_timesteps(12, "uniform")) == 13  # the original runs 13 steps for S = 12
    assert 811 in ddim_timesteps(16, "uniform_trailing").tolist()  # np.round half to even: 812.5 -> 812
    sig = ddim_parameters(v, 50, "uniform_trailing", 1.0).sigmas
    assert abs(float(sig[-1]) - 0.999957) < 1e-6 and abs(float(sig[0]) - 0.028507) < 1e-6
    assert abs(float(make_schedule(VARIANTS["1024"].schedule).scale_arr[199]) - 0.650877) < 1e-6
