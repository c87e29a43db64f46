"""CIL Analytic-Init in the real host: the statistics loader node (its own model folder, .pt and .safetensors), the
DynamiCrafter Sampler's init_noise and the NOISE for SamplerCustomAdvanced, against the REFERENCE code's goldens
(tests/data/parity_cil, thu-ml/cond-image-leakage), and the clear errors for files that do not fit.

The network is the small_512 parity fixture loaded through the pack's loader code, as in tests/host/nodes/controls.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from support import controls_parts
from support.controls_parts import SCALE, TOL, as_video, assert_matches, load_fixture, sample_custom_advanced
from support.parity_data import relative_l2

GOLDENS = Path(__file__).resolve().parents[2] / "data" / "parity_cil"
CONFIG = json.loads((GOLDENS / "config.json").read_text())
FRAMES, SEED = CONFIG["frames"], CONFIG["seed"]


@pytest.fixture(scope="module")
def pack(comfy_host):
    modules = {
        name.rsplit(".", 1)[-1]: comfy_host.import_pack_module(f"nodes.{name}")
        for name in ("init_noise", "adapter.family", "sampler")
    }
    modules["patcher"] = comfy_host.import_pack_module("nodes.adapter.patcher")
    import comfy_extras.nodes_custom_sampler as custom

    modules["custom"] = custom
    return modules


@pytest.fixture(scope="module")
def g() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "analytic.safetensors"))


@pytest.fixture(scope="module")
def stats_folder(comfy_host, pack, g, tmp_path_factory):
    """A statistics folder registered under the pack's folder name, holding the goldens' statistics as the
    released files hold them: a torch.save'd dict (.pt) and Kijai's safetensors copy."""
    folder = tmp_path_factory.mktemp("init-noise")
    stats = {k: g[k].clone() for k in ("Expectation_X0", "Tr_Cov_d")}
    torch.save(stats, folder / "initial_noise_small.pt")
    save_file(stats, str(folder / "initial_noise_small.safetensors"))
    comfy_host.folder_paths.add_model_folder_path(pack["init_noise"].FOLDER, str(folder))
    return folder


@pytest.fixture(scope="module")
def model(pack):
    return load_fixture(pack, "512")


def conds(pack, g):
    """Positive / negative as the image-to-video node builds them (controls_parts), from the goldens' stand-ins."""
    return controls_parts.conds(pack, {**g, "latent_first_raw": g["c_concat"][:, :, 0] / SCALE})


def empty(g) -> dict:
    return {"samples": torch.zeros(FRAMES, 4, *g["eps"].shape[-2:])}


def load_init(pack, name: str, m: int):
    return pack["init_noise"].DynamiCrafterAnalyticInit.execute(name, m).result[0]


def run_sampler(pack, model, g, init, eta: float, **controls) -> torch.Tensor:
    positive, negative = conds(pack, g)
    s = CONFIG["sampling"]
    with torch.no_grad():
        out = pack["sampler"].DynamiCrafterSampler.execute(
            model, positive, negative, empty(g), SEED, s["steps"], s["cfg"], eta, s["guidance_rescale"], "auto",
            "auto", init_noise=init, **controls,
        )  # fmt: skip
    return as_video(out.result[0]["samples"])


def test_the_folder_lists_statistics_files(comfy_host, pack, stats_folder):
    (stats_folder / "notes.txt").write_text("not a statistics file")
    names = comfy_host.folder_paths.get_filename_list(pack["init_noise"].FOLDER)
    assert {"initial_noise_small.pt", "initial_noise_small.safetensors"} <= set(names)
    assert "notes.txt" not in names


@pytest.mark.parametrize(("m", "eta"), [(run["M"], run["eta"]) for run in CONFIG["runs"]])
@pytest.mark.parametrize("file", ["initial_noise_small.pt", "initial_noise_small.safetensors"])
def test_sampler_with_analytic_init_equals_the_reference(pack, model, g, stats_folder, single_thread, file, m, eta):
    ours = run_sampler(pack, model, g, load_init(pack, file, m), eta)
    assert_matches(ours, g[f"M{m}.eta{eta:g}.final"])
    if m != 1000:  # and it can fail: a plain run from noise is far from it
        plain = run_sampler(pack, model, g, None, eta)
        assert relative_l2(plain, g[f"M{m}.eta{eta:g}.final"]) > 100 * TOL


def test_analytic_noise_in_sampler_custom_advanced_equals_the_reference(pack, model, g, stats_folder, single_thread):
    m = CONFIG["runs"][0]["M"]
    nodes, init_nodes = pack["sampler"], pack["init_noise"]
    positive, negative = conds(pack, g)
    init = load_init(pack, "initial_noise_small.safetensors", m)
    noise = init_nodes.DynamiCrafterAnalyticNoise.execute(model, positive, init, SEED).result[0]
    guider = nodes.guider_for(model, positive, negative, CONFIG["sampling"]["cfg"], None, -1.0)
    sampler = nodes.DynamiCrafterDDIMSampler.execute(model, 1.0, "auto").result[0]
    sigmas = nodes.DynamiCrafterScheduler.execute(model, CONFIG["sampling"]["steps"], "auto", m / 1000).result[0]
    out = sample_custom_advanced(pack, noise, guider, sampler, sigmas, empty(g))
    assert_matches(as_video(out), g[f"M{m}.eta1.final"])


def test_statistics_for_another_size_are_refused_saying_which_size_they_fit(pack, model, g, stats_folder):
    init = load_init(pack, "initial_noise_small.pt", 900)
    positive, negative = conds(pack, g)
    wrong = {"samples": torch.zeros(FRAMES, 4, 40, 64)}
    with pytest.raises(ValueError) as err:
        pack["sampler"].DynamiCrafterSampler.execute(
            model, positive, negative, wrong, SEED, 2, 7.5, 1.0, -1.0, "auto", "auto", init_noise=init
        )
    message = str(err.value)
    assert "16 frames at 128x64" in message and "512x320" in message


def test_denoise_with_init_noise_is_refused(pack, model, g, stats_folder):
    init = load_init(pack, "initial_noise_small.pt", 900)
    positive, negative = conds(pack, g)
    with pytest.raises(ValueError, match="denoise"):
        pack["sampler"].DynamiCrafterSampler.execute(
            model, positive, negative, empty(g), SEED, 2, 7.5, 1.0, -1.0, "auto", "auto", denoise=0.5, init_noise=init
        )


def test_files_that_are_not_statistics_get_a_clear_error(pack, stats_folder):
    torch.save({"something": torch.zeros(3)}, stats_folder / "other.pt")
    torch.save({"Expectation_X0": torch.zeros(4, 16, 8, 16), "Tr_Cov_d": torch.tensor(0.5)}, stats_folder / "flat.pt")
    (stats_folder / "broken.safetensors").write_bytes(b"\x00" * 64)
    torch.save(
        {"Expectation_X0": torch.zeros(1, 4, 16, 8, 16), "Tr_Cov_d": torch.tensor(float("nan"))},
        stats_folder / "nan.pt",
    )
    error = pack["init_noise"].InitStatisticsError
    for name, words in [
        ("other.pt", "not an Analytic-Init statistics file"),
        ("flat.pt", "expected [1, 4, frames"),
        ("broken.safetensors", "cannot be read"),
        ("nan.pt", "NaN"),
    ]:
        with pytest.raises(error) as err:
            load_init(pack, name, 900)
        assert name in str(err.value) and words in str(err.value)


def test_a_pickle_that_runs_code_is_refused(pack, stats_folder):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"Expectation_X0": Payload(), "Tr_Cov_d": torch.tensor(0.5)}, stats_folder / "evil.pt")
    with pytest.raises(pack["init_noise"].InitStatisticsError, match="evil.pt: refused to load"):
        load_init(pack, "evil.pt", 900)
