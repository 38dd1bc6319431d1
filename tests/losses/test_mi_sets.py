"""ReMINE's downstream losses equal the official arithmetic (Siyeong-Lee/Deconstructing-MINE,
experiments_classification.py and experiments_self_contrastive.py) in float64, value and
gradient; the joint / marginal sets equal a hand-built example."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infossl.losses.mi_sets import contrastive_sets, set_loss, supervised_sets


def test_supervised_sets_pick_the_true_class_logit_and_every_logit():
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    sets = supervised_sets(logits, torch.tensor([2, 0]))
    assert sets.joint.tolist() == [3.0, 4.0]
    assert sorted(sets.marginal.tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    row_lse = [
        math.log(math.exp(1) + math.exp(2) + math.exp(3)),
        math.log(math.exp(4) + math.exp(5) + math.exp(6)),
    ]
    assert float(sets.infonce_log_partition) == pytest.approx(np.mean(row_lse) - math.log(3))


def test_contrastive_sets_positives_are_other_samples_of_the_same_class():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 0])
    sets = contrastive_sets(f, labels)
    dots = f @ f.T
    # same class, i != j: (0,2) (0,3) (2,0) (2,3) (3,0) (3,2), row-major as masked_select
    expected = [dots[0, 2], dots[0, 3], dots[2, 0], dots[2, 3], dots[3, 0], dots[3, 2]]
    assert sets.joint.tolist() == pytest.approx([float(v) for v in expected])
    assert sets.marginal.numel() == 12 and float(sets.marginal.sum()) == pytest.approx(
        float(dots.sum() - dots.diag().sum())
    )
    # row weights = positives per row (2, 0, 2, 2): row 1 has none and does not count
    rows = [
        torch.logsumexp(torch.cat([dots[i, :i], dots[i, i + 1 :]]), 0) - math.log(3)
        for i in range(4)
    ]
    expected_lp = (2 * rows[0] + 2 * rows[2] + 2 * rows[3]) / 6
    assert float(sets.infonce_log_partition) == pytest.approx(float(expected_lp))


# ---- the official functions, transcribed (experiments_self_contrastive.py) -------------------
def _official(name, dot, labels, alpha):
    b = len(labels)
    marginal_mask = ~torch.eye(b, dtype=torch.bool)
    joint_mask = (labels[:, None] == labels) & marginal_mask
    joint, marginal = dot.masked_select(joint_mask), dot.masked_select(marginal_mask)

    def reg_loss(mi, reg):  # _regularized_loss
        loss = mi - reg
        with torch.no_grad():
            mi_loss = mi - loss
        return loss + mi_loss

    def mine():
        return joint.mean(), torch.logsumexp(marginal, 0) - np.log(b * (b - 1))

    def tuba(clip, a_y):
        j, m = (
            (joint.clip(-clip, clip), marginal.clip(-clip, clip)) if clip > 0 else (joint, marginal)
        )
        return j.mean(), m.exp().mean() / a_y + np.log(a_y) - 1.0

    lme = torch.logsumexp(marginal, 0) - np.log(marginal.shape[0])
    if name == "mine":
        t, et = mine()
        return t - et if alpha == 0 else reg_loss(t - et, alpha * et.square())
    if name == "infonce":
        t = joint.mean()
        et_all = torch.logsumexp(marginal.reshape(b, b - 1), 1) - np.log(b - 1)
        sel = joint_mask.sum(1).double()
        et = torch.dot(et_all, sel) / sel.sum()
        return t - et if alpha == 0 else reg_loss(t - et, alpha * et.square())
    if name == "smile":
        t = joint.clamp(-10, 10).mean()
        et = torch.logsumexp(marginal.clamp(-10, 10), 0) - np.log(b * (b - 1))
        _, reg_et = mine()
        return t - et if alpha == 0 else reg_loss(t - et, alpha * reg_et.square())
    if name in ("nwj", "tuba"):
        a_y = np.e if name == "nwj" else 1.0
        t, et = tuba(10.0 if alpha else 0.0, a_y)
        return t - et if alpha == 0 else reg_loss(t - et, alpha * lme.square())
    # js -> nwjjs / renwjjs
    t = -F.softplus(-joint).mean()
    et = F.softplus(marginal).mean()
    loss = t - et if alpha == 0 else reg_loss(t - et, alpha * (et - 1.0).square())
    tn, etn = tuba(0.0, np.e)
    mi = tn - etn
    with torch.no_grad():
        mi_loss = mi - loss
    return loss + mi_loss


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("name", ["mine", "smile", "infonce", "nwj", "tuba", "js"])
def test_contrastive_losses_equal_the_official_value_and_gradient(name, alpha):
    torch.manual_seed(0)
    f = (torch.randn(8, 5, dtype=torch.float64) * 2.2).requires_grad_()  # scores beyond +-10
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])
    dot = f @ f.T
    assert float(dot.detach().abs().max()) > 10
    ref = _official(name, dot, labels, alpha)
    (g_ref,) = torch.autograd.grad(ref, f)
    ours, estimate = set_loss(name, contrastive_sets(f, labels), alpha)
    (g_ours,) = torch.autograd.grad(ours, f)
    assert float(ours) == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
    assert float(estimate) == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_supervised_mine_and_infonce_equal_the_official_classification_script():
    torch.manual_seed(1)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 1, 2, 0])
    mask = F.one_hot(labels, 4).bool()
    joints = logits.masked_select(mask)
    mine_ref = joints.mean() - (torch.logsumexp(logits, dim=(0, 1)) - np.log(24))
    infonce_ref = joints.mean() - (logits.logsumexp(dim=1).mean() - np.log(4))
    sets = supervised_sets(logits, labels)
    assert float(set_loss("mine", sets)[0]) == pytest.approx(float(mine_ref), rel=1e-12)
    assert float(set_loss("infonce", sets)[0]) == pytest.approx(float(infonce_ref), rel=1e-12)


def test_the_regularizer_changes_the_gradient_not_the_value():
    torch.manual_seed(2)
    logits = (torch.randn(5, 3, dtype=torch.float64) + 3).requires_grad_()
    sets = supervised_sets(logits, torch.tensor([0, 1, 2, 0, 1]))
    plain, _ = set_loss("mine", sets, 0.0)
    reg, _ = set_loss("mine", sets, 1.0)
    assert float(plain) == pytest.approx(float(reg), rel=1e-14)
    g_plain = torch.autograd.grad(plain, logits, retain_graph=True)[0]
    g_reg = torch.autograd.grad(reg, logits)[0]
    # d/dlogits of -lambda * (log-partition)^2 = -2 lambda * lp * d lp / dlogits
    lp = torch.logsumexp(logits.detach().flatten(), 0) - math.log(15)
    d_lp = torch.softmax(logits.detach().flatten(), 0).reshape(5, 3)
    torch.testing.assert_close(g_reg - g_plain, -2.0 * lp * d_lp)
