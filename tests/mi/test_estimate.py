"""``estimate`` on a correlated Gaussian with known MI (I = -(d/2) log(1 - rho^2)): InfoNCE (far
below its log N_test ceiling), SMILE and KNIFE recover it within their stated uncertainty, and the
result carries its settings and training curve."""

import math

import numpy as np
import pytest

from infossl.mi import ESTIMATORS, MIInputError, estimate

TRUE_MI = 0.5


def gaussian(n=1000, dim=2, mi=TRUE_MI, seed=0):
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    return x, rho * x + math.sqrt(1.0 - rho**2) * rng.standard_normal((n, dim))


TINY = dict(hidden_dim=32, embed_dim=8, batch_size=128, max_steps=200, eval_every=25, patience=4)


@pytest.mark.parametrize(
    "estimator, options",
    [("infonce", dict(lr=2e-3)), ("smile", dict(lr=2e-3)), ("knife", dict())],
)
def test_recovers_gaussian_mi_within_stated_uncertainty(estimator, options):
    x, y = gaussian()
    res = estimate(x, y, estimator, **TINY, **options)
    assert 0.01 < res.stderr < 0.1
    assert abs(res.estimate - TRUE_MI) < 3 * res.stderr, (res.estimate, res.stderr)
    assert res.ci[0] < res.estimate < res.ci[1]
    assert res.estimate == res.curve["heldout"][res.curve["step"].index(res.best_step)]
    if estimator != "knife":  # the bounds stop at their held-out maximum (KNIFE: knife_heldout)
        assert res.estimate == max(res.curve["heldout"])
    assert res.settings["n_train"] == res.settings["n_heldout"] == 500
    if estimator == "infonce":
        assert res.estimate < math.log(500) - 5  # far below the held-out ceiling log N_test


def test_every_estimator_is_listed_and_builds():
    assert set(ESTIMATORS) >= {"infonce", "dv", "mine", "nwj", "tuba", "js", "smile", "flo"}
    assert {"knife", "knife_joint"} <= set(ESTIMATORS)


def test_unknown_option_is_an_input_error():
    x, y = gaussian(n=300)
    with pytest.raises(MIInputError, match="smile"):
        estimate(x, y, "smile", batch_size=64, max_steps=1, no_such_option=1)


def test_weight_decay_default_tightens_the_held_out_bound_where_the_critic_overfits():
    # 2 correlated pairs among 10 + 10 coordinates, 500 training pairs: the critic overfits the
    # 16 noise coordinates. Plain Adam stops at 0.70 nats, AdamW with the default decay at 0.77
    # (true 1.02; +0.06 to +0.08 on each of seeds 0-2).
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1000, 10)), rng.standard_normal((1000, 10))
    y[:, :2] = 0.8 * x[:, :2] + 0.6 * y[:, :2]
    true_mi = -math.log(1 - 0.8**2)
    run = dict(hidden_dim=32, embed_dim=8, batch_size=128, max_steps=1500, eval_every=50)
    run["anchor"] = None  # the network alone: what decay acts on
    decayed = estimate(x, y, "infonce", patience=4, **run)
    plain = estimate(x, y, "infonce", patience=4, weight_decay=0.0, **run)
    assert decayed.settings["weight_decay"] == 2.0 and plain.settings["weight_decay"] == 0.0
    assert decayed.estimate > plain.estimate + 0.03
    assert decayed.estimate < true_mi + 3 * decayed.stderr
    knife = estimate(x[:300], y[:300], "knife", batch_size=64, max_steps=1)
    assert knife.settings["weight_decay"] == 0.0  # KNIFE's means and scales are not decayed
