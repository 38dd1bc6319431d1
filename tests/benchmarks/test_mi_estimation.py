"""Gaussian MI staircase: the summary statistics against hand-computed numbers, the true-MI formula,
and a short CPU run (one level, 800 steps) in which NWJ, FLO and regularized MINE converge to the
true MI; the JSON/PNG it writes hold those numbers."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import mi_estimation as bench
from benchmarks._gaussian import mi_staircase, mi_to_rho


def test_true_mi_formula_and_inverse_match_reference_rhos():
    # methods.md section 6: I = 2, 4, 6, 8, 10 <-> rho = 0.4258, 0.5742, 0.6717, 0.7421, 0.7951.
    for mi, rho in zip([2, 4, 6, 8, 10], [0.4258, 0.5742, 0.6717, 0.7421, 0.7951], strict=True):
        assert mi_to_rho(20, mi) == pytest.approx(rho, abs=1e-4)
        # inverse: I = -d/2 log(1 - rho^2) for d independent pairs of correlation rho
        assert -10 * math.log(1 - mi_to_rho(20, mi) ** 2) == pytest.approx(mi)
    assert list(mi_staircase([2, 4], 3)) == [2, 2, 2, 4, 4, 4]


def test_summary_uses_last_quarter_of_each_level_and_skips_diverged_steps():
    est = np.array([[9, 9, 9, 1.0, 3, 9, 9, np.nan]])  # levels 2 and 4, 4 steps each
    rows = bench.summarize(est, mi_staircase([2, 4], 4), [2, 4], 4)
    assert rows[0]["mean"] == 1.0 and rows[0]["bias"] == -1.0 and rows[0]["mse"] == 1.0
    assert rows[1]["n"] == 0 and rows[1]["diverged_steps"] == 1
    assert math.isnan(rows[1]["mean"])


def test_reg_suffix_selects_weight_and_unknown_names_fail():
    assert bench.parse_name("mine+reg", 1.0) == ("mine", 1.0)
    assert bench.parse_name("nwj", 1.0) == ("nwj", 0.0)
    with pytest.raises(ValueError, match="unknown estimator"):
        bench.parse_name("no-such-estimator", 1.0)


def test_short_staircase_converges_for_nwj_flo_and_regularized_mine(tmp_path, monkeypatch):
    # 2-D Gaussian at 1 nat (rho = 0.795), separable critic, lr 2e-3, 800 steps: measured biases
    # were -0.17 (NWJ), -0.17 (FLO), -0.12 (MINE+reg); tolerance 0.25 nats.
    out = tmp_path / "mi"
    argv = "--estimators nwj flo mine+reg --critic separable --steps-per-level 800 --levels 1"
    argv += f" --dim 2 --lr 2e-3 --no-tensorboard --out {out}"
    results = bench.main(argv.split())
    for row in results:
        assert abs(row["bias"]) < 0.25, row
        assert row["diverged_steps"] == 0
    saved = json.loads((out / "mi_estimation.json").read_text())
    assert saved["results"] == results
    assert (out / "mi_estimation.png").stat().st_size > 10_000


class _Constant(nn.Module):
    """A toy 'estimator family' that always reports 1.5 nats (to test the registry hook)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, y):
        return (self.w**2), 1.5


def test_new_family_is_one_registry_entry_with_its_own_batch_size(tmp_path, monkeypatch):
    seen = []
    spec = bench.RunnerSpec(lambda cfg: _Constant(), batch_size=7, lr=1e-3)
    monkeypatch.setitem(bench.RUNNERS, "toy", spec)
    real = bench.sample_correlated_gaussian
    monkeypatch.setattr(
        bench, "sample_correlated_gaussian", lambda b, *a, **k: seen.append(b) or real(b, *a, **k)
    )
    args = f"--estimators toy --steps-per-level 8 --levels 2 --no-tensorboard --out {tmp_path}"
    rows = bench.main(args.split())
    assert set(seen) == {7}
    assert rows[0]["mean"] == pytest.approx(1.5) and rows[0]["bias"] == pytest.approx(-0.5)


def test_a_critic_free_estimator_runs_once_whatever_the_critics(tmp_path, monkeypatch):
    runs = []
    spec = bench.RunnerSpec(lambda cfg: runs.append(cfg.critic) or _Constant(), uses_critic=False)
    monkeypatch.setitem(bench.RUNNERS, "toy", spec)
    args = "--estimators toy --critic separable concat --steps-per-level 4 --levels 2"
    rows = bench.main([*args.split(), "--no-tensorboard", "--out", str(tmp_path)])
    assert runs == ["separable"] and [r["critic"] for r in rows] == ["separable"]


def test_official_semantics_are_remines_experiments_py_settings():
    def runner(name, reg_weight):
        cfg = bench.RunConfig(dim=2, reg_weight=reg_weight, semantics="official")
        return bench.BoundRunner(name, cfg)

    # resmile_lower_bound / smile_lower_bound: tau = 10, trained on the clipped DV value
    for lam in (0.0, 1.0):
        assert runner("smile", lam).bound.estimator_kwargs == {"clip": 10.0, "objective": "dv"}
    # renwj / retuba clip at 10, nwj / tuba do not; tuba_lower_bound has a = 1 (no baseline)
    assert runner("nwj", 1.0).bound.estimator_kwargs == {"clip": 10.0}
    assert runner("nwj", 0.0).bound.estimator_kwargs == {}
    assert runner("tuba", 1.0).baseline is None and runner("tuba", 1.0).bound.clip == 10.0
    assert bench.BoundRunner("tuba", bench.RunConfig(dim=2)).baseline is not None
    assert bench.KnifeRunner(bench.RunConfig(dim=2, semantics="official")).knife.per_sample_abs
