"""FLO: Fenchel-Legendre Optimization bound (Guo et al., NeurIPS 2022; arXiv 2107.01131).

Single-sample bound (preprint Eq. 11-12):
    I_FLO(u, g) = 1 - E_{p(x,y)p(y')}[ u(x,y) + exp(-u(x,y) + g(x,y') - g(x,y)) ],
tight at u* = -log p(x,y)/(p(x)p(y)) (the negative pointwise MI, Eq. 14) and g* = log density ratio.

Multi-negative form actually used by the official code (``Jupyter-Notebook/FLO-BiLinear-code-snippet
.ipynb``, ``LossFLO``; same in ``FLO-code.zip: code/20Dmulti/FenchelInfoNCE-pmi-10D-multi.py`` with
K-1 shuffled negatives): with the in-batch K-1 negatives of row i,
    l_i = u_i + exp(-u_i + logsumexp_{j != i} g_ij - g_ii) / (K - 1) - 1,   loss = mean_i l_i,
    I_hat = -loss.
``u`` has one entry per joint pair (shape (K,), or (K, 1) as the official ``u`` head returns).

Regularizer: FLO is invariant to g -> g + c(x) (only the contrasts g_ij - g_ii enter), so the
"drifting" ReMINE fights cannot change the FLO value. The ReMINE term on log E_Q[e^g] is accepted
for uniformity: it only pins the free additive constant of g and never biases the estimate. It is
not applied to u, whose optimum -PMI is fixed by the data (a target on it would bias I_hat).
"""

from __future__ import annotations

import math

import torch

from infossl.losses.mi_bounds import RowStats, _lme_offdiag, regularizer, row_statistics


def flo_per_row(stats: RowStats, u: torch.Tensor) -> torch.Tensor:
    """l_i per row (shape (rows,)); ``stats`` of the g-score matrix, ``u`` of the u head."""
    u = u.reshape(-1).to(stats.diag.dtype)
    log_mean_neg = stats.offdiag_lse - math.log(stats.num_cols - 1)
    return u + torch.exp(-u + log_mean_neg - stats.diag) - 1.0


def flo(
    g_scores: torch.Tensor | RowStats,
    u: torch.Tensor,
    reg_weight: float = 0.0,
    reg_target: float = 0.0,
    reg_distance: str = "squared",
) -> dict[str, torch.Tensor]:
    """FLO loss on a K x K g-score matrix (diagonal = positives) and u of the K positive pairs.

    Guo et al., NeurIPS 2022, in the multi-negative form of the official ``LossFLO``
    (qingguo666/FLO, ``Jupyter-Notebook/FLO-BiLinear-code-snippet.ipynb``); see the module
    docstring.

    Args:
        g_scores: (K, K) scores g(x_i, y_j), or their :class:`RowStats`.
        u: (K,) or (K, 1) u head on the K joint pairs.
        reg_weight: weight of the optional term on log E_Q[e^g] (pins g's free constant only).
        reg_target: its target.
        reg_distance: "squared" or "absolute".

    Returns:
        dict of ``loss`` (mean_i l_i, plus the optional gauge regularizer), ``mi`` =
        -mean_i l_i, ``joint_term`` = mean g_ii, ``log_partition`` = log E_Q[e^g] over
        off-diagonal pairs and ``neg_pmi`` = mean u (FLO's estimate of E_P[-PMI], i.e. about -I
        at the optimum).
    """
    st = g_scores if isinstance(g_scores, RowStats) else row_statistics(g_scores)
    return flo_from_rows(flo_per_row(st, u), st, u, reg_weight, reg_target, reg_distance)


def flo_from_rows(
    per_row: torch.Tensor,
    stats: RowStats,
    u: torch.Tensor,
    reg_weight: float = 0.0,
    reg_target: float = 0.0,
    reg_distance: str = "squared",
) -> dict[str, torch.Tensor]:
    """Reduce per-row FLO terms of the *whole* batch (already gathered when distributed)."""
    loss = per_row.mean()
    log_partition = _lme_offdiag(stats.offdiag_lse, stats.num_cols)
    if reg_weight != 0.0:
        loss = loss + regularizer(log_partition, reg_weight, reg_target, reg_distance)
    return {
        "loss": loss,
        "mi": -per_row.mean().detach(),
        "joint_term": stats.diag.mean().detach(),
        "log_partition": log_partition.detach(),
        "neg_pmi": u.detach().float().mean(),
    }
