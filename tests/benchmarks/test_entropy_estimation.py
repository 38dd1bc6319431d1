"""Entropy benchmark: the triangle-mixture truth against numerical integration and Monte Carlo,
the official step-down schedule, and a tiny end-to-end run whose JSON holds the analytic entropy
it compares against (and in which KNIFE lands near it)."""

import json
import math

import numpy as np
import pytest
import torch

from benchmarks import entropy_estimation as bench


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_triangle_mixture_entropy_equals_numerical_integral_and_monte_carlo():
    mix = bench.TriangleMixture(10, 1, np.random.default_rng(0))
    grid = np.linspace(-0.5, 10.5, 2_000_001)
    p = mix.pdf(grid)
    assert np.trapezoid(p, grid) == pytest.approx(1.0, abs=1e-4)
    safe = np.where(p > 0, p, 1.0)
    integral = -np.trapezoid(p * np.log(safe), grid)
    assert mix.entropy() == pytest.approx(integral, abs=1e-3)
    x = mix.sample(200_000).numpy()[:, 0]
    assert -np.log(mix.pdf(x)).mean() == pytest.approx(mix.entropy(), abs=0.02)
    eight = bench.TriangleMixture(2, 8, np.random.default_rng(1))
    one = bench.TriangleMixture(2, 1, np.random.default_rng(1))
    assert eight.entropy() == pytest.approx(8 * one.entropy())


def test_tiny_run_writes_analytic_entropy_and_knife_lands_near_it(tmp_path):
    out = bench.main(
        ["--experiments", "gaussian10", "triangle1d", "--reps", "2", "--iters", "100"]
        + ["--epochs", "1", "--out", str(tmp_path)]
    )
    saved = json.loads((tmp_path / "entropy_estimation.json").read_text())
    assert (tmp_path / "entropy_estimation.png").stat().st_size > 0
    analytic = 5 * math.log(2 * math.pi * math.e)  # d = 10 standard Gaussian
    assert saved["gaussian10"]["analytic_entropy"] == pytest.approx([analytic, analytic])
    runs = saved["gaussian10"]["runs"]
    errors = [r["estimates"]["KNIFE"] - r["true_entropy"] for r in runs]
    summary = saved["gaussian10"]["summary"]["KNIFE"]
    assert summary["abs_error_mean"] == pytest.approx(np.abs(errors).mean())
    assert summary["abs_error_mean"] < 0.5
    assert len(saved["triangle1d"]["pdf"]["KNIFE"]) == len(saved["triangle1d"]["pdf"]["x"])
    assert out["gaussian10"]["config"]["iters"] == 100
    merged = bench.merge([tmp_path], tmp_path / "merged")
    assert merged["gaussian10"]["summary"] == saved["gaussian10"]["summary"]
    assert (tmp_path / "merged" / "entropy_estimation.png").exists()


def test_stepdown_follows_the_official_schedule_five_levels_each_d_over_2_log_2_lower():
    exp = bench.Experiment("gaussian", 2, 1e-2, 1, 50, 1, modes=8, cov_steps=5, cov_factor=0.5)
    run = bench.run_once(exp, 0, torch.device("cpu"), trace=True)
    levels = bench.stepdown_levels(run, exp)
    # official: the covariance changes where (i + 1) % (50 // 5 + 1) == 0, i.e. at 10, 21, 32, 43
    assert [lv["steps"][0] for lv in levels] == [0, 10, 21, 32, 43]
    truths = np.array([lv["true_entropy"] for lv in levels])
    np.testing.assert_allclose(np.diff(truths), -math.log(2), rtol=1e-12)  # (d/2) log 0.5, d = 2
