"""The official codes' training semantics, value and gradient, in float64: ReMINE (in-batch DV +
regularizer, no moving average), SMILE / ReSMILE trained on the clipped DV value, ReNWJ / ReTUBA
with the [-10, 10] score clip, SMILE with tau = infinity, and MINE's float64 moving average.

Each reference below transcribes the official function's arithmetic (repository and file named on
it); "official value with a training gradient" is written as ``value + (train - train.detach())``
with ``train`` the expression the official optimizer ascends, which is what ``x - reg +
stop_gradient(reg)`` and ``_regularized_loss`` compute."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infossl.losses.mi_bounds import ESTIMATORS, MIBoundLoss, check_options, dv, mine, nwj, smile
from infossl.losses.mi_bounds import tuba as tuba_bound

K = 7


def _scores(seed, big=False):
    torch.manual_seed(seed)
    s = 3 * torch.randn(K, K, dtype=torch.float64)
    if big:  # scores above the clip level 10, on and off the diagonal
        s = s + 9 * torch.eye(K, dtype=torch.float64)
        s[0, 3], s[2, 5], s[4, 1], s[1, 1], s[5, 5] = 14.0, 11.5, -12.0, 13.0, 16.0
        assert (s.diag() > 10).any() and (s[~torch.eye(K, dtype=torch.bool)] > 10).sum() >= 2
    return s.requires_grad_(True)


# --- Deconstructing-MINE, experiments.py (TF), transcribed to torch --------------------------


def reduce_logmeanexp_nodiag(x):
    """experiments.py: reduce_logmeanexp_nodiag(x, axis=None)."""
    k = x.shape[0]
    return torch.logsumexp((x - torch.diag(math.inf * torch.ones(k, dtype=x.dtype))).ravel(), 0) - (
        math.log(k * (k - 1.0))
    )


def stop_gradient_reg(mi, reg):
    """``mi - reg + tf.stop_gradient(reg)``: value mi, gradient of mi - reg."""
    return mi - reg + reg.detach()


def tf_remine_lower_bound(scores, weight=1.0):
    """experiments.py: remine_lower_bound (weight 1.0 hard-coded there)."""
    joint_term = scores.diag().mean()
    marg_term = reduce_logmeanexp_nodiag(scores)
    return stop_gradient_reg(joint_term - marg_term, weight * marg_term**2)


def tf_smile_lower_bound(scores):
    """experiments.py: smile_lower_bound (clip 10, trained on this value)."""
    return scores.diag().mean() - reduce_logmeanexp_nodiag(scores.clamp(-10, 10))


def tf_resmile_lower_bound(scores):
    """experiments.py: resmile_lower_bound."""
    mi = tf_smile_lower_bound(scores)
    return stop_gradient_reg(mi, reduce_logmeanexp_nodiag(scores) ** 2)


def tf_retuba_lower_bound(scores, a_y=1.0):
    """experiments.py: retuba_lower_bound; renwj_lower_bound is a_y = e."""
    c = scores.clamp(-10, 10)
    joint_term = c.diag().mean()
    marg_term = reduce_logmeanexp_nodiag(c).exp() / a_y + np.log(a_y) - 1.0
    return stop_gradient_reg(joint_term - marg_term, reduce_logmeanexp_nodiag(scores) ** 2)


# --- Deconstructing-MINE, experiments_self_contrastive.py (PyTorch) ---------------------------
# There the joint pairs are the same-label pairs of one batch (_masked_dot_products); with the
# diagonal as the joint pairs, joint = s.diag() and marginal = the off-diagonal entries.


def _joint_marginal(s):
    off = ~torch.eye(s.shape[0], dtype=torch.bool)
    return s.diag(), torch.masked_select(s, off)


def _regularized_loss(mi, reg):
    """experiments_self_contrastive.py: _regularized_loss."""
    loss = mi - reg
    with torch.no_grad():
        mi_loss = mi - loss
    return loss + mi_loss


def pt_remine(s, alpha, bias):
    """experiments_self_contrastive.py: _mine + remine."""
    joint, marginal = _joint_marginal(s)
    t = joint.mean()
    et = torch.logsumexp(marginal, dim=0) - np.log(K * (K - 1))
    return _regularized_loss(t - et, alpha * torch.square(et - bias))


def pt_resmile(s, clip, alpha, bias):
    """experiments_self_contrastive.py: _smile + resmile (the joint term clipped too)."""
    joint, marginal = _joint_marginal(s)
    t = torch.clamp(joint, -clip, clip).mean()
    et = torch.logsumexp(torch.clamp(marginal, -clip, clip), dim=0) - np.log(K * (K - 1))
    reg_et = torch.logsumexp(marginal, dim=0) - np.log(K * (K - 1))
    return _regularized_loss(t - et, alpha * torch.square(reg_et - bias))


def pt_retuba(s, clip, alpha, a_y):
    """experiments_self_contrastive.py: _tuba + retuba (a_y = 1) / renwj (a_y = e)."""
    joint, marginal = _joint_marginal(s)
    t = torch.clip(joint, -clip, clip).mean()
    et = torch.clip(marginal, -clip, clip).exp().mean() / a_y + np.log(a_y) - 1.0
    reg = alpha * torch.square(torch.logsumexp(marginal, dim=0) - np.log(marginal.shape[0]))
    return _regularized_loss(t - et, reg)


# --- ermongroup/smile-mi-estimator, estimators.py ---------------------------------------------


def se_js_fgan_lower_bound(f):
    f_diag = f.diag()
    n = f.size(0)
    second = (torch.sum(F.softplus(f)) - torch.sum(F.softplus(f_diag))) / (n * (n - 1.0))
    return -F.softplus(-f_diag).mean() - second


def se_smile_lower_bound(f, clip=None):
    """estimators.py: smile_lower_bound (clip=None is its default, tau = infinity)."""
    f_ = torch.clamp(f, -clip, clip) if clip is not None else f
    dv_value = f.diag().mean() - reduce_logmeanexp_nodiag(f_)
    js = se_js_fgan_lower_bound(f)
    with torch.no_grad():
        dv_js = dv_value - js
    return js + dv_js


def _grads(out_loss, official, s):
    """Ours minimises ``out_loss``; the official code ascends ``official``: same gradient."""
    (g,) = torch.autograd.grad(out_loss, s, retain_graph=True)
    (g_ref,) = torch.autograd.grad(-official, s, retain_graph=True)
    torch.testing.assert_close(g, g_ref)
    return g


@pytest.mark.parametrize("big", [False, True])
def test_remine_is_dv_plus_regularizer_as_official_tf_and_pytorch(big):
    s = _scores(0, big)
    out = dv(s, reg_weight=1.0)
    torch.testing.assert_close(out.mi, tf_remine_lower_bound(s).detach())
    _grads(out.loss, tf_remine_lower_bound(s), s)
    out = dv(s, reg_weight=0.1, reg_target=0.3)
    official = pt_remine(s, alpha=0.1, bias=0.3)
    torch.testing.assert_close(out.mi, official.detach())
    _grads(out.loss, official, s)


def test_mine_with_moving_average_is_not_the_official_remine_gradient():
    s = _scores(1)
    (g_mine,) = torch.autograd.grad(mine(s, reg_weight=1.0).loss, s)
    (g_ref,) = torch.autograd.grad(-tf_remine_lower_bound(s), s)
    assert (g_mine - g_ref).abs().max() > 1e-2  # why remine.yaml defaults to dv, not mine


@pytest.mark.parametrize("big", [False, True])
def test_smile_dv_objective_matches_remine_tf_smile_and_resmile(big):
    s = _scores(2, big)
    out = smile(s, clip=10.0, objective="dv")
    torch.testing.assert_close(out.mi, tf_smile_lower_bound(s).detach())
    _grads(out.loss, tf_smile_lower_bound(s), s)
    out = smile(s, clip=10.0, objective="dv", reg_weight=1.0)
    torch.testing.assert_close(out.mi, tf_resmile_lower_bound(s).detach())
    _grads(out.loss, tf_resmile_lower_bound(s), s)


@pytest.mark.parametrize("big", [False, True])
def test_smile_dv_objective_with_clipped_joint_matches_remine_pytorch_resmile(big):
    s = _scores(3, big)
    out = smile(s, clip=10.0, objective="dv", clip_joint=True, reg_weight=0.1)
    official = pt_resmile(s, clip=10.0, alpha=0.1, bias=0.0)
    torch.testing.assert_close(out.mi, official.detach())
    _grads(out.loss, official, s)
    if big:  # the joint clip matters once a diagonal score exceeds 10
        assert abs(float(out.mi) - float(smile(s, clip=10.0, objective="dv").mi)) > 0.5


def test_smile_js_objective_still_matches_song_and_ermon():
    s = _scores(4, big=True)
    out = smile(s, clip=5.0)
    official = se_smile_lower_bound(s, clip=5.0)
    torch.testing.assert_close(out.mi, official.detach())
    _grads(out.loss, official, s)


def test_smile_with_tau_infinity_is_dv_trained_with_js():
    s = _scores(5, big=True)
    out = smile(s, clip=None)
    official = se_smile_lower_bound(s, clip=None)
    torch.testing.assert_close(out.mi, official.detach())
    torch.testing.assert_close(out.mi, dv(s).mi)  # the value is DV ...
    g = _grads(out.loss, official, s)
    (g_js,) = torch.autograd.grad(-se_js_fgan_lower_bound(s), s)
    torch.testing.assert_close(g, g_js)  # ... the gradient JS's
    # with the DV objective and tau = inf SMILE is DV itself, value and gradient
    out_dv = smile(s, clip=None, objective="dv", reg_weight=0.5)
    ref = dv(s, reg_weight=0.5)
    torch.testing.assert_close(out_dv.loss, ref.loss)
    torch.testing.assert_close(
        torch.autograd.grad(out_dv.loss, s)[0], torch.autograd.grad(ref.loss, s)[0]
    )


@pytest.mark.parametrize(("name", "a_y"), [("tuba", 1.0), ("nwj", math.e)])
@pytest.mark.parametrize("big", [False, True])
def test_clipped_nwj_tuba_match_remine_retuba_and_renwj(name, a_y, big):
    s = _scores(6, big)
    fn = ESTIMATORS[name]
    out = fn(s, clip=10.0, reg_weight=1.0)
    official = tf_retuba_lower_bound(s, a_y)
    torch.testing.assert_close(out.mi, official.detach())
    _grads(out.loss, official, s)
    out = fn(s, clip=10.0, reg_weight=0.01)
    official = pt_retuba(s, clip=10.0, alpha=0.01, a_y=a_y)
    torch.testing.assert_close(out.mi, official.detach())
    _grads(out.loss, official, s)
    if big:  # e^14 against e^10 in E_Q: the clip changes the value by orders of magnitude
        assert abs(float(fn(s).mi) - float(out.mi)) > 1e3
    else:  # all |scores| < 10: the clip is a no-op
        torch.testing.assert_close(fn(s).mi, out.mi)


def test_clipped_tuba_with_baseline_regularizes_the_unclipped_log_partition():
    s = _scores(7, big=True)
    b = torch.randn(K, dtype=torch.float64)
    out = tuba_bound(s, log_baseline=b, clip=10.0)
    c = s.clamp(-10, 10) - b[:, None]
    off = ~torch.eye(K, dtype=torch.bool)
    value = 1 + c.diag().mean() - torch.exp(c[off]).mean()
    torch.testing.assert_close(out.mi, value.detach())
    torch.testing.assert_close(
        out.log_partition, torch.log(torch.exp((s - b[:, None])[off]).mean())
    )


def test_clipped_statistics_must_match_the_requested_clip():
    from infossl.losses.mi_bounds import row_statistics

    s = _scores(8).detach()
    with pytest.raises(ValueError, match="clipped at 5.0"):
        nwj(row_statistics(s, clip=5.0), clip=10.0)
    torch.testing.assert_close(
        nwj(row_statistics(s, clip=10.0), clip=10.0).mi, nwj(s, clip=10.0).mi
    )


def test_mine_moving_average_is_float64_and_matches_a_float64_reference():
    loss = MIBoundLoss("mine", momentum=0.9)
    assert loss.ema.dtype == torch.float64
    ema = 1.0
    for seed in range(3):
        s = _scores(10 + seed).detach().float()
        loss.train()(s)
        z = float(torch.exp(s.double()[~torch.eye(K, dtype=torch.bool)]).mean())
        ema = max(0.9 * ema + 0.1 * z, 1e-4)  # SMILE's estimators.py: mine_lower_bound update
        assert loss.ema.dtype == torch.float64
        assert float(loss.ema) == pytest.approx(ema, rel=1e-6)  # float32 scores, float64 state


def test_options_are_checked_at_construction():
    with pytest.raises(ValueError, match="smile objective"):
        MIBoundLoss("smile", objective="nce")
    with pytest.raises(ValueError, match="takes no option"):
        MIBoundLoss("dv", clip=10.0)
    with pytest.raises(ValueError, match="clip must be > 0"):
        check_options("nwj", {"clip": 0.0})


def test_remine_preset_routes_the_official_options_to_each_estimator():
    from pathlib import Path

    from omegaconf import OmegaConf

    import infossl
    from infossl.methods.remine import estimator_kwargs

    preset = Path(infossl.__file__).parent / "configs" / "methods" / "remine.yaml"
    loss = OmegaConf.to_container(OmegaConf.load(preset).loss)
    assert (loss["estimator"], loss["reg_weight"]) == ("dv", 0.1)
    assert estimator_kwargs(loss) == {}
    smile_kwargs = estimator_kwargs({**loss, "estimator": "smile"})
    assert smile_kwargs == {"clip": 10.0, "objective": "dv", "clip_joint": True}
    for name in ("nwj", "tuba"):  # renwj_t10 / retuba_t10; plain nwj / tuba never clip
        assert estimator_kwargs({**loss, "estimator": name}) == {"clip": 10.0}
        assert estimator_kwargs({**loss, "estimator": name, "reg_weight": 0.0}) == {"clip": None}
    assert estimator_kwargs({**loss, "estimator": "mine"}) == {"momentum": 0.9}
    for name in ESTIMATORS:  # every estimator accepts what the preset gives it
        check_options(name, estimator_kwargs({**loss, "estimator": name}))
