"""Analytic-Init statistics: the released layout is accepted, anything else is refused with what was wrong; the
start noise is the closed form at alpha_bar[M - 1] (the reference run is in tests/parity/test_parity_cil.py)."""

from __future__ import annotations

import pytest
import torch

from dynamicrafter.analytic_init import InitStatisticsError, analytic_start, statistics_from_state_dict
from dynamicrafter.config import VARIANTS
from dynamicrafter.schedule import make_schedule

RELEASED_512 = {"Expectation_X0": torch.zeros(1, 4, 16, 40, 64), "Tr_Cov_d": torch.tensor(0.808)}


def test_the_released_layout_is_read_with_its_size():
    stats = statistics_from_state_dict(RELEASED_512, "initial_noise_512.pt")
    assert (stats.frames, stats.latent_size) == (16, (40, 64))
    assert stats.describe() == "16 frames at 512x320 (width x height)"
    stats.check_fits(16, 40, 64)


@pytest.mark.parametrize(
    ("frames", "h", "w"), [(16, 72, 128), (24, 40, 64), (16, 40, 48)], ids=["1024 video", "24 frames", "narrower"]
)
def test_another_video_size_is_refused_naming_the_size_the_file_fits(frames, h, w):
    stats = statistics_from_state_dict(RELEASED_512, "initial_noise_512.pt")
    with pytest.raises(InitStatisticsError) as err:
        stats.check_fits(frames, h, w)
    assert "16 frames at 512x320" in str(err.value) and f"{frames} frames at {w * 8}x{h * 8}" in str(err.value)


@pytest.mark.parametrize(
    ("sd", "words"),
    [
        ({"Expectation_X0": torch.zeros(1, 4, 16, 8, 8)}, "no Tr_Cov_d"),
        ({"mean": torch.zeros(3)}, "not an Analytic-Init statistics file"),
        ({**RELEASED_512, "Expectation_X0": torch.zeros(4, 16, 40, 64)}, "expected [1, 4, frames"),
        ({**RELEASED_512, "Expectation_X0": torch.zeros(1, 3, 16, 40, 64)}, "expected [1, 4, frames"),
        ({**RELEASED_512, "Tr_Cov_d": torch.zeros(2)}, "must be one number"),
        ({**RELEASED_512, "Tr_Cov_d": torch.tensor(-0.1)}, "negative"),
        ({**RELEASED_512, "Expectation_X0": torch.full((1, 4, 16, 40, 64), float("inf"))}, "infinite"),
    ],
)
def test_bad_statistics_are_refused(sd, words):
    with pytest.raises(InitStatisticsError) as err:
        statistics_from_state_dict(sd, "stats.pt")
    assert str(err.value).startswith("stats.pt: ") and words in str(err.value)


def test_the_start_is_the_closed_form_and_m_is_bounded():
    schedule = make_schedule(VARIANTS["512"].schedule)
    mean = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    stats = statistics_from_state_dict({"Expectation_X0": mean, "Tr_Cov_d": torch.tensor(0.25)}, "s")
    eps = torch.randn(2, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    a = schedule.alphas_cumprod[899].double()
    expected = a.sqrt() * mean.double() + (1 - a + a * 0.25).sqrt() * eps.double()
    torch.testing.assert_close(analytic_start(schedule, stats, 900, eps).double(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(analytic_start(schedule, stats, 1000, eps), eps)  # zero terminal SNR: plain noise
    for m in (0, 1001):
        with pytest.raises(ValueError, match="between 1 and 1000"):
            analytic_start(schedule, stats, m, eps)
