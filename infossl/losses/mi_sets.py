"""ReMINE's downstream MI losses on a *set* of joint scores and a set of marginal scores.

ReMINE's real-data benchmarks (Choi & Lee, UAI 2022; Siyeong-Lee/Deconstructing-MINE) do not use
the K x K "diagonal = joint" score matrix of ``mi_bounds.py``; they pick the joint and marginal
scores out of a matrix with a mask and average over those sets:

- supervised (``experiments_classification.py``): the C logits of a classifier are the critic
  T(x, y = c); joint = the true class's logit of every sample, marginal = all B x C logits;
- contrastive (``experiments_self_contrastive.py``): T(x_i, x_j) = <f(x_i), f(x_j)> on raw
  features; joint = pairs of *different* samples of the same class (i != j, y_i = y_j),
  marginal = all B(B - 1) off-diagonal pairs.

Each loss returns ``(objective, estimate)``: ``objective`` is what the official code maximizes
(the regularized ones through ``_regularized_loss``: value of the MI estimate, gradient of
``mi - reg``), ``estimate`` the MI value the official code records. The six losses and their
regularized versions follow the official ``criterions`` tables of both scripts: ``smile`` clips
at tau = 10 (``smile_t10`` / ``resmile_t10``), the regularized NWJ / TUBA clip their main terms
to [-10, 10] (``renwj_t10`` / ``retuba_t10``), ``js`` trains the f-GAN JS bound and reports NWJ
(``nwjjs`` / ``renwjjs``, bias 1 in the regularizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SET_LOSSES = ("mine", "smile", "infonce", "nwj", "tuba", "js")
CLIP = 10.0  # tau of smile_t10 / resmile_t10 and the clip of renwj_t10 / retuba_t10


@dataclass
class ScoreSets:
    """Joint and marginal critic scores of one batch, and InfoNCE's log-partition.

    ``infonce_log_partition`` differs between the two benchmarks (see the builders), so the
    builder computes it where the row structure is still known.
    """

    joint: torch.Tensor  # (n_joint,)
    marginal: torch.Tensor  # (n_marginal,)
    infonce_log_partition: torch.Tensor  # scalar


def supervised_sets(logits: torch.Tensor, labels: torch.Tensor) -> ScoreSets:
    """SLB: joint = logits[i, y_i], marginal = every logit (``experiments_classification.py``
    ``_mine`` / ``_infonce``); InfoNCE's log-partition is the mean row log-sum-exp - log C."""
    classes = logits.shape[1]
    joint = logits.gather(1, labels[:, None]).squeeze(1)
    log_partition = logits.logsumexp(dim=1).mean() - math.log(classes)
    return ScoreSets(joint, logits.flatten(), log_partition)


def contrastive_sets(features: torch.Tensor, labels: torch.Tensor) -> ScoreSets:
    """CLB: scores <f_i, f_j>; joint = same class, i != j; marginal = every i != j
    (``experiments_self_contrastive.py`` ``_masked_dot_products``). InfoNCE's log-partition is
    each row's off-diagonal log-mean-exp, averaged with the row's number of positives as weight
    (its ``_infonce``)."""
    b = features.shape[0]
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=features.device)
    joint_mask = (labels[:, None] == labels[None, :]) & off_diagonal
    dots = features @ features.T
    marginal = dots.masked_select(off_diagonal)
    row_lme = marginal.reshape(b, b - 1).logsumexp(dim=1) - math.log(b - 1)
    weights = joint_mask.sum(dim=1).to(dots.dtype)
    log_partition = (row_lme * weights).sum() / weights.sum()
    return ScoreSets(dots.masked_select(joint_mask), marginal, log_partition)


def _log_mean_exp(x: torch.Tensor) -> torch.Tensor:
    return x.logsumexp(dim=0) - math.log(x.numel())


def _regularized(mi: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    # Official _regularized_loss: the value of mi, the gradient of mi - reg.
    return mi - reg + reg.detach()


def _tuba_value(sets: ScoreSets, a_y: float, clip: float | None) -> torch.Tensor:
    # Official _tuba: t - (E_Q[e^T] / a_y + log a_y - 1); NWJ is a_y = e, TUBA a_y = 1.
    joint, marginal = sets.joint, sets.marginal
    if clip is not None:
        joint, marginal = joint.clamp(-clip, clip), marginal.clamp(-clip, clip)
    return joint.mean() - (marginal.exp().mean() / a_y + math.log(a_y) - 1.0)


def set_loss(
    name: str, sets: ScoreSets, reg_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(objective to maximize, recorded MI estimate)`` of loss ``name`` (reg_weight = lambda;
    0 is the unregularized loss)."""
    if name not in SET_LOSSES:
        raise ValueError(f"unknown loss '{name}'; use one of {', '.join(SET_LOSSES)}")
    regularized = reg_weight > 0
    joint, marginal = sets.joint, sets.marginal
    dv_log_partition = _log_mean_exp(marginal)
    if name == "mine":  # _mine: DV, no moving average in the benchmarks
        mi = joint.mean() - dv_log_partition
        reg = reg_weight * dv_log_partition.square()
    elif name == "infonce":
        mi = joint.mean() - sets.infonce_log_partition
        reg = reg_weight * sets.infonce_log_partition.square()
    elif name == "smile":  # _smile: DV on scores clipped to [-tau, tau]; reg on the unclipped
        mi = joint.clamp(-CLIP, CLIP).mean() - _log_mean_exp(marginal.clamp(-CLIP, CLIP))
        reg = reg_weight * dv_log_partition.square()
    elif name in ("nwj", "tuba"):  # renwj_t10 / retuba_t10 clip their main terms
        mi = _tuba_value(sets, math.e if name == "nwj" else 1.0, CLIP if regularized else None)
        reg = reg_weight * dv_log_partition.square()
    else:  # js: train the f-GAN JS bound (rejs: bias 1), record NWJ (nwjjs / renwjjs)
        js_term = F.softplus(marginal).mean()
        js_value = -F.softplus(-joint).mean() - js_term
        reg = reg_weight * (js_term - 1.0).square()
        trained = _regularized(js_value, reg) if regularized else js_value
        nwj = _tuba_value(sets, math.e, None)
        return trained + (nwj - trained).detach(), nwj.detach()
    objective = _regularized(mi, reg) if regularized else mi
    return objective, mi.detach()
