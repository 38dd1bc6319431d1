"""The Gaussian anchor (``infossl/mi/anchor.py``): its scores are the fitted Gaussian's log
density ratio (against SciPy's densities), its rank is chosen by cross-validation within the
training part, and an anchored ``estimate`` starts from the Gaussian's held-out bound."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from infossl.losses.mi_bounds import infonce, nwj
from infossl.mi import MIInputError, estimate
from infossl.mi.anchor import GaussianCritic, cross_validated_rank


def sparse_pairs(n, dim, pairs, rho, seed=0):
    """``pairs`` coordinates of y correlated with x at rho, the rest independent noise."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
    y[:, :pairs] = rho * x[:, :pairs] + math.sqrt(1 - rho**2) * y[:, :pairs]
    return x, y, -pairs / 2 * math.log(1 - rho**2)


def test_full_rank_scores_are_the_fitted_gaussians_log_density_ratio():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((5, 5))
    z = rng.standard_normal((400, 5)) @ mix + np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    x, y = torch.tensor(z[:, :3]), torch.tensor(z[:, 3:])
    critic = GaussianCritic(x, y, rank=None)
    assert critic.rank == 2
    mean, cov = z.mean(0), np.cov(z.T, bias=True)
    pts = z[:7]
    joint = multivariate_normal(mean, cov).logpdf(pts)
    px = multivariate_normal(mean[:3], cov[:3, :3]).logpdf(pts[:, :3])
    py = multivariate_normal(mean[3:], cov[3:, 3:]).logpdf(pts[:, 3:])
    expected = joint - px - py
    got = critic.aligned(x[:7], y[:7]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)
    # forward's diagonal is the aligned score; an off-diagonal entry is the ratio at (x_0, y_1)
    scores = critic(x[:7], y[:7]).numpy()
    np.testing.assert_allclose(np.diag(scores), got, rtol=1e-10)
    cross = np.concatenate([pts[0, :3], pts[1, 3:]])
    off = (
        multivariate_normal(mean, cov).logpdf(cross)
        - multivariate_normal(mean[:3], cov[:3, :3]).logpdf(cross[:3])
        - multivariate_normal(mean[3:], cov[3:, 3:]).logpdf(cross[3:])
    )
    assert scores[0, 1] == pytest.approx(off, abs=1e-8)
    # the Gaussian's MI, 1/2 log(|S_xx| |S_yy| / |S|)
    logdet = np.linalg.slogdet
    mi = 0.5 * (logdet(cov[:3, :3])[1] + logdet(cov[3:, 3:])[1] - logdet(cov)[1])
    assert critic.mi == pytest.approx(mi, rel=1e-9)


def test_rank_is_the_number_of_dependent_pairs_and_zero_without_linear_dependence():
    x, y, _ = sparse_pairs(2500, 10, 2, 0.8)
    assert cross_validated_rank(torch.tensor(x), torch.tensor(y)) == 2
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2500, 10)), rng.standard_normal((2500, 10))
    assert cross_validated_rank(torch.tensor(x), torch.tensor(y)) == 0
    assert GaussianCritic(torch.tensor(x), torch.tensor(y)).mi == 0.0
    assert cross_validated_rank(torch.tensor(x[:9]), torch.tensor(y[:9])) == 0  # folds too small


def test_reduced_rank_beats_full_rank_on_held_out_pairs():
    # 2 dependent pairs among 25 + 25 coordinates: the full-rank fit spends 625 noisy
    # cross-covariances on 2 500 pairs and loses ~0.1 nats of held-out InfoNCE.
    x, y, true_mi = sparse_pairs(5000, 25, 2, 0.8)
    x, y = torch.tensor(x), torch.tensor(y)
    held = slice(2500, None)
    full = GaussianCritic(x[:2500], y[:2500], rank=None)
    chosen = GaussianCritic(x[:2500], y[:2500])
    full_mi = float(infonce(full(x[held], y[held])).mi)
    chosen_mi = float(infonce(chosen(x[held], y[held])).mi)
    assert chosen.rank == 2
    assert chosen_mi > full_mi + 0.05
    assert abs(chosen_mi - true_mi) < 0.05


def test_nwj_offset_makes_the_anchor_its_optimal_critic():
    x, y, true_mi = sparse_pairs(4000, 3, 2, 0.6)
    x, y = torch.tensor(x), torch.tensor(y)
    plain = GaussianCritic(x[:2000], y[:2000])
    shifted = GaussianCritic(x[:2000], y[:2000], offset=1.0)
    held = (x[2000:], y[2000:])
    # NWJ = E_P[T] - E_Q[e^(T - 1)] is tight at T = 1 + log ratio, 1/e short at T = log ratio
    tight, loose = float(nwj(shifted(*held)).mi), float(nwj(plain(*held)).mi)
    assert abs(tight - true_mi) < 0.05
    assert loose == pytest.approx(tight - math.exp(-1), abs=0.02)


@pytest.mark.parametrize(
    "estimator, critic",
    [("infonce", "separable"), ("nwj", "separable"), ("flo", "separable"), ("infonce", "concat")],
)
def test_anchored_estimate_starts_at_the_gaussians_bound(estimator, critic):
    x, y, true_mi = sparse_pairs(2000, 10, 2, 0.8)
    run = dict(hidden_dim=32, embed_dim=8, batch_size=128, max_steps=100, eval_every=50)
    res = estimate(x, y, estimator, critic=critic, **run)
    assert res.settings["anchor"] == "gaussian" and res.settings["anchor_rank"] == 2
    assert abs(res.settings["anchor_train_mi"] - true_mi) < 0.1
    assert res.curve["step"][0] == 0 and math.isnan(res.curve["train"][0])
    # the anchor alone on the same held-out half, fitted on the same training half
    perm = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    xt, yt = (torch.tensor((a - a.mean(0)) / a.std(0), dtype=torch.float32)[perm] for a in (x, y))
    anchor_mi = float(infonce(GaussianCritic(xt[:1000], yt[:1000])(xt[1000:], yt[1000:])).mi)
    # plus the untrained network's small scores
    assert res.curve["heldout"][0] == pytest.approx(anchor_mi, abs=0.05)
    assert abs(res.estimate - true_mi) < 3 * res.stderr + 0.05


def test_anchor_none_trains_from_scratch_and_a_bad_anchor_is_an_input_error():
    x, y, _ = sparse_pairs(600, 3, 1, 0.8)
    res = estimate(x, y, "infonce", anchor=None, batch_size=64, max_steps=20, eval_every=10)
    assert res.curve["step"][0] == 10
    knife = estimate(x, y, "knife", batch_size=64, max_steps=10, eval_every=10)
    assert knife.settings["anchor"] is None and knife.curve["step"] == [10]  # nothing to anchor
    with pytest.raises(MIInputError, match="anchor"):
        estimate(x, y, "infonce", anchor="cca", batch_size=64, max_steps=1)
