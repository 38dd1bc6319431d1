"""Early stopping keeps the held-out maximum (constructed curves, and a full ``estimate`` run whose
held-out evaluations are scripted); the bootstrap's standard error matches the analytic one for a
mean."""

import math

import numpy as np
import pytest
import torch

import infossl.mi.fit as est_mod
from infossl.mi.selection import EarlyStopping, bootstrap


def test_keeps_the_maximum_and_stops_after_patience_without_one():
    stopper = EarlyStopping(patience=2)
    curve = [(100, 0.2), (200, 0.9), (300, float("nan")), (400, 0.85)]
    for step, value in curve:
        stopper.update(step, value, keep=f"state@{step}")
        assert not stopper.stop or step == 400
    assert stopper.stop  # 300 (NaN) and 400 (0.85 < 0.9): two evaluations without a new best
    assert (stopper.best_step, stopper.best_value, stopper.best) == (200, 0.9, "state@200")


def test_a_later_maximum_resets_patience():
    stopper = EarlyStopping(patience=2)
    for step, value in [(1, 0.1), (2, 0.0), (3, 0.5), (4, 0.4)]:
        stopper.update(step, value)
    assert not stopper.stop and stopper.best_step == 3 and stopper.since_best == 1


class _ScriptedHeldOut:
    """Stands in for a model's held-out evaluation: value i of the script at evaluation i."""

    def __init__(self, value):
        self.n, self.estimate, self.monitor = 4, value, value

    def value(self, rows=None):
        return self.estimate


def test_estimate_reports_the_held_out_maximum_of_its_curve(monkeypatch):
    script = iter([0.3, 0.7, 1.1, 0.9, 0.8, 0.95, 0.2, 0.1])
    real_build = est_mod.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.heldout = lambda x, y: _ScriptedHeldOut(next(script))
        return model

    monkeypatch.setattr(est_mod, "build_model", build)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2))
    res = est_mod.estimate(
        x,
        x + rng.standard_normal((64, 2)),
        "nwj",
        anchor=None,  # an anchored critic is also evaluated at step 0
        hidden_dim=8,
        embed_dim=4,
        batch_size=16,
        max_steps=100,
        eval_every=10,
        patience=3,
    )
    assert res.curve["step"] == [10, 20, 30, 40, 50, 60]  # stopped: 3 evaluations after 30
    assert res.curve["heldout"] == [0.3, 0.7, 1.1, 0.9, 0.8, 0.95]
    assert (res.estimate, res.best_step, res.stopped_early) == (1.1, 30, True)


def test_bootstrap_stderr_of_a_mean_matches_sd_over_sqrt_n():
    values = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    class Mean:
        n = values.numel()

        def value(self, rows):
            return float(values[rows].mean())

    stderr, (lo, hi) = bootstrap(Mean(), 400, torch.Generator().manual_seed(1), "cpu")
    expected = float(values.std()) / math.sqrt(values.numel())
    assert stderr == pytest.approx(expected, rel=0.1)
    assert lo < float(values.mean()) < hi
    assert hi - lo == pytest.approx(2 * 1.96 * expected, rel=0.15)
