"""Variational lower bounds on mutual information, with the ReMINE regularizer.

Every estimator reads a critic score matrix ``scores[i, j] = T(x_i, y_j)``: the diagonal holds the
joint pairs (samples of P = p(x, y)), the K(K-1) off-diagonal entries the product of marginals
(Q = p(x)p(y)), as in Poole et al. 2019 (``vbmi_demo.ipynb``) and Song & Ermon 2020
(``smile-mi-estimator/estimators.py``).

All estimators need only four per-row statistics of that matrix (:class:`RowStats`): the diagonal
score, the off-diagonal log-sum-exp (optionally of clipped scores) and the off-diagonal sum of
softplus. Reducing to them first lets ``ssl_mi.py`` score only its local rows against the global
batch, gather these K-vectors with ``gather_cat`` and still compute *exactly* the 1-process value.

ReMINE (Choi & Lee, UAI 2022; official ``Deconstructing-MINE``): the loss becomes
``-objective + lambda * d(log_partition, C)``; the regularizer only shapes the gradient, and the
reported ``mi`` stays the unregularized estimate (``experiments_self_consistency.py:
imine_lower_bound`` and ``experiments.py: remine_lower_bound`` return
``mi - reg + stop_gradient(reg)``; here ``loss``'s *value* is ``-mi + reg`` so that the number one
minimizes is visible, its gradient is the same).

Where the two families of official code train differently, both are available (the defaults of the
functions are Song & Ermon's / Poole's; ``configs/methods/remine.yaml`` selects ReMINE's):

* SMILE's objective (``smile(objective=...)``): ``"js"`` trains the critic with the JS bound (Song &
  Ermon, ``smile-mi-estimator/estimators.py: smile_lower_bound``); ``"dv"`` trains on the clipped
  DV value itself (ReMINE, ``experiments.py: smile_lower_bound / resmile_lower_bound`` with
  tau = 10; ``experiments_self_contrastive.py: _smile`` also clips the joint term,
  ``clip_joint=True``).
* NWJ / TUBA score clip (``nwj(clip=...)``, ``tuba(clip=...)``): ReMINE's ReNWJ / ReTUBA clip the
  scores to [-10, 10] inside the value (``experiments.py: retuba_lower_bound``,
  ``experiments_self_contrastive.py: _tuba`` with clip=10), joint and marginal terms alike; the
  regularizer still reads the unclipped log E_Q[e^T]. Poole's and Song & Ermon's NWJ/TUBA do not
  clip.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

REG_DISTANCES = ("squared", "absolute")


@dataclass
class RowStats:
    """Per-row sufficient statistics of (a row block of) a K x K score matrix.

    Every bound of this module needs only these (Poole et al. 2019; Song & Ermon 2020). Rows of
    different processes concatenate into the statistics of the full matrix, which is why the SSL
    losses gather these instead of the scores.

    Attributes:
        diag: (rows,) T(x_i, y_i).
        offdiag_lse: (rows,) logsumexp over j != i of T(x_i, y_j).
        offdiag_softplus: (rows,) sum over j != i of softplus(T(x_i, y_j)), for the JS bound.
        clipped_offdiag_lse: the same log-sum-exp of scores clipped to [-clip, clip], or None.
        clip: that clip level, or None.
        num_cols: K.
    """

    diag: torch.Tensor  # T(x_i, y_i)
    offdiag_lse: torch.Tensor  # logsumexp_{j != i} T(x_i, y_j)
    offdiag_softplus: torch.Tensor  # sum_{j != i} softplus(T(x_i, y_j)), for the JS bound
    clipped_offdiag_lse: torch.Tensor | None  # logsumexp_{j != i} clip(T_ij, -tau, tau) (SMILE)
    clip: float | None
    num_cols: int

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> RowStats:
        """Apply ``fn`` (e.g. gather_cat) to every tensor field."""
        c = self.clipped_offdiag_lse
        return RowStats(
            fn(self.diag),
            fn(self.offdiag_lse),
            fn(self.offdiag_softplus),
            None if c is None else fn(c),
            self.clip,
            self.num_cols,
        )


def row_statistics(
    scores: torch.Tensor, diag_offset: int = 0, clip: float | None = None
) -> RowStats:
    """Statistics of an (n, K) row block whose row i has its joint pair in column diag_offset + i.

    The log-sum-exps run in at least float32 outside autocast: with scores of O(10) the exp in
    bf16 loses the negatives' differences.

    Args:
        scores: (n, K) critic scores; the full K x K matrix or one process's rows of it.
        diag_offset: column of row 0's joint pair (0 for the full matrix).
        clip: also compute the log-sum-exp of scores clipped to [-clip, clip] (SMILE, clipped
            NWJ/TUBA); None skips it.

    Returns:
        :class:`RowStats` of the block.
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.to(torch.promote_types(scores.dtype, torch.float32))
        n, k = s.shape
        rows = torch.arange(n, device=s.device)
        joint_mask = F.one_hot(rows + diag_offset, k).bool()
        diag = s[rows, rows + diag_offset]
        offdiag_lse = torch.logsumexp(s.masked_fill(joint_mask, float("-inf")), dim=1)
        offdiag_softplus = F.softplus(s).masked_fill(joint_mask, 0.0).sum(dim=1)
        clipped = None
        if clip is not None:
            sc = s.clamp(-clip, clip).masked_fill(joint_mask, float("-inf"))
            clipped = torch.logsumexp(sc, dim=1)
    return RowStats(diag, offdiag_lse, offdiag_softplus, clipped, clip, k)


@dataclass
class MIBoundOutput:
    """What every bound of this module returns.

    Attributes:
        loss: the number to minimize, -objective + lambda * d(log_partition, C) (with gradient).
        mi: the unregularized MI estimate in nats (detached).
        joint_term: E_P[T] (detached).
        log_partition: the term the ReMINE regularizer acts on for this estimator (detached).
        state: MINE's updated moving average, else None.
    """

    loss: torch.Tensor  # minimize this: -training objective + lambda * d(log_partition, C)
    mi: torch.Tensor  # unregularized MI estimate (detached)
    joint_term: torch.Tensor  # E_P[T] (detached)
    log_partition: torch.Tensor  # the term ReMINE regularizes for this estimator (detached)
    state: torch.Tensor | None = None  # MINE's updated moving average, else None


def _stats(scores: torch.Tensor | RowStats, clip: float | None = None) -> RowStats:
    """Row statistics of ``scores`` (clipped at ``clip`` too), or ``scores`` if already reduced."""
    return scores if isinstance(scores, RowStats) else row_statistics(scores, clip=clip)


def _lme_offdiag(lse_rows: torch.Tensor, k: int) -> torch.Tensor:
    """log mean exp over all K(K-1) off-diagonal entries, from the per-row log-sum-exps."""
    return torch.logsumexp(lse_rows, dim=0) - math.log(lse_rows.shape[0] * (k - 1))


def regularizer(
    log_partition: torch.Tensor, reg_weight: float, reg_target: float, reg_distance: str
) -> torch.Tensor:
    """lambda * d(log_partition, C): ReMINE's d is squared L2 (``_l2_distance``), L1 optional."""
    if reg_distance == "squared":
        return reg_weight * (log_partition - reg_target) ** 2
    if reg_distance == "absolute":
        return reg_weight * (log_partition - reg_target).abs()
    raise ValueError(f"reg_distance must be one of {REG_DISTANCES}, got {reg_distance!r}")


def _finish(
    train_objective: torch.Tensor,
    mi: torch.Tensor,
    joint_term: torch.Tensor,
    log_partition: torch.Tensor,
    reg_weight: float,
    reg_target: float,
    reg_distance: str,
    state: torch.Tensor | None = None,
) -> MIBoundOutput:
    # Surrogate: value = mi, gradient = that of train_objective (JS-trained bounds, MINE's EMA):
    # the js + stop_gradient(nwj - js) device of Poole et al.'s js_lower_bound.
    surrogate = train_objective + (mi - train_objective).detach()
    loss = -surrogate
    if reg_weight != 0.0:
        loss = loss + regularizer(log_partition, reg_weight, reg_target, reg_distance)
    return MIBoundOutput(loss, mi.detach(), joint_term.detach(), log_partition.detach(), state)


def infonce(scores, reg_weight=0.0, reg_target=0.0, reg_distance="squared") -> MIBoundOutput:
    """InfoNCE (van den Oord 2018): mean_i [T_ii - log (1/K) sum_j e^{T_ij}], <= log K.

    The row sum includes the positive (Poole's ``infonce_lower_bound``). ReInfoNCE regularizes the
    mean row-wise log-mean-exp (``experiments_self_contrastive.py: _infonce``; there over the
    off-diagonal row, here over the full row our bound uses).

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    st = _stats(scores)
    row_lme = torch.logaddexp(st.offdiag_lse, st.diag) - math.log(st.num_cols)
    joint = st.diag.mean()
    log_partition = row_lme.mean()
    mi = joint - log_partition
    return _finish(mi, mi, joint, log_partition, reg_weight, reg_target, reg_distance)


def dv(scores, reg_weight=0.0, reg_target=0.0, reg_distance="squared") -> MIBoundOutput:
    """Donsker-Varadhan: E_P[T] - log E_Q[e^T] with the in-batch E_Q (ReMINE's ``mine_lower_bound``,
    SMILE's ``dv_upper_lower_bound``); regularized it is ReMINE (``imine_lower_bound``).

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    st = _stats(scores)
    joint = st.diag.mean()
    log_partition = _lme_offdiag(st.offdiag_lse, st.num_cols)
    mi = joint - log_partition
    return _finish(mi, mi, joint, log_partition, reg_weight, reg_target, reg_distance)


def mine(
    scores,
    ema: torch.Tensor | None = None,
    momentum: float = 0.9,
    reg_weight=0.0,
    reg_target=0.0,
    reg_distance="squared",
) -> MIBoundOutput:
    """MINE (Belghazi et al. 2018, Sec. 3.2): DV value; the gradient of log E_Q[e^T] uses a moving
    average of E_Q[e^T] in the denominator to de-bias it.

    Follows SMILE's ``mine_lower_bound``:
    new = clamp(momentum * ema + (1 - momentum) * Z_batch, 1e-4), gradient term Z_batch / new
    (new held constant). ``ema=None`` starts from 1.0 as SMILE does. The updated average comes
    back in ``state`` (float64); pass it in at the next step. (SMILE's function returns Z_batch
    instead of the new average, which makes its "EMA" one step long; we carry the average.)

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        ema: the moving average returned as ``state`` at the previous step (None: 1.0).
        momentum: weight of the previous average.
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    st = _stats(scores)
    joint = st.diag.mean()
    log_partition = _lme_offdiag(st.offdiag_lse, st.num_cols)
    mi = joint - log_partition
    z_batch = log_partition.exp()
    if ema is None:
        ema = torch.ones((), dtype=torch.float64, device=z_batch.device)
    # The average is kept in float64 (like the other running state in infossl.losses): over long
    # runs float32 loses the (1 - momentum) * Z increments once Z spans many orders of magnitude.
    z64 = z_batch.detach().to(torch.float64)
    new_ema = (momentum * ema.to(torch.float64) + (1 - momentum) * z64).clamp(min=1e-4)
    train = joint - z_batch / new_ema.to(z_batch.dtype)
    return _finish(train, mi, joint, log_partition, reg_weight, reg_target, reg_distance, new_ema)


def _clipped(st: RowStats, clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(diag, off-diagonal row log-sum-exps) of the scores clipped to [-clip, clip] (None: raw)."""
    if clip is None:
        return st.diag, st.offdiag_lse
    if st.clip != clip:
        raise ValueError(f"row statistics were clipped at {st.clip}, the bound asked for {clip}")
    return st.diag.clamp(-clip, clip), st.clipped_offdiag_lse


def tuba(
    scores,
    log_baseline: torch.Tensor | None = None,
    clip: float | None = None,
    reg_weight=0.0,
    reg_target=0.0,
    reg_distance="squared",
) -> MIBoundOutput:
    """TUBA (Poole et al. 2019, Eq. 8): 1 + E_P[T - log a] - E_Q[e^{T - log a}].

    ``log_baseline`` is log a(x_i) for row i (shape (rows,)); None means a = 1 (ReMINE's ``tuba``).
    Poole's benchmark uses the "unnormalized" baseline, a 512-unit MLP of the row variable
    (``BASELINES['unnormalized']``); the benchmark builds it. The regularizer acts on
    log E_Q[e^{T - log a}], the log-partition of the effective critic (ReTUBA with a = 1).
    ``clip``: the value uses scores clipped to [-clip, clip] (ReMINE's ReTUBA, clip 10: TF
    ``experiments.py: retuba_lower_bound``, PyTorch ``experiments_self_contrastive.py: _tuba``);
    the regularized log-partition stays unclipped, as there. None (Poole): no clip.

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        log_baseline: (rows,) log a(x_i); None is a = 1.
        clip: clip the scores in the value to [-clip, clip] (None: no clip).
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    st = _stats(scores, clip)
    diag, lse = _clipped(st, clip)
    raw_lse = st.offdiag_lse
    if log_baseline is not None:
        diag, lse, raw_lse = diag - log_baseline, lse - log_baseline, raw_lse - log_baseline
    joint = diag.mean()
    mi = 1.0 + joint - _lme_offdiag(lse, st.num_cols).exp()
    log_partition = _lme_offdiag(raw_lse, st.num_cols)
    return _finish(mi, mi, joint, log_partition, reg_weight, reg_target, reg_distance)


def nwj(
    scores, clip: float | None = None, reg_weight=0.0, reg_target=0.0, reg_distance="squared"
) -> MIBoundOutput:
    """NWJ (Nguyen et al. 2010) = TUBA with a = e: E_P[T] - E_Q[e^{T-1}].

    ReNWJ regularizes log E_Q[e^T] of the raw scores (``renwj``: ``reg_marginal`` from a_y = 1).
    At NWJ's optimum log E_Q[e^T] = 1, so the poster's d(E_Q[e^{T-1}], 1) is ``reg_target=1`` here;
    the official code's target is 0. ``clip`` as in :func:`tuba` (ReMINE's ReNWJ: 10, joint and
    marginal scores clipped inside the value, ``renwj_lower_bound`` = ``retuba`` with a_y = e).

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        clip: clip the scores in the value to [-clip, clip] (None: no clip).
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    st = _stats(scores, clip)
    diag, lse = _clipped(st, clip)
    joint = diag.mean()
    mi = joint - (_lme_offdiag(lse, st.num_cols) - 1.0).exp()
    log_partition = _lme_offdiag(st.offdiag_lse, st.num_cols)
    return _finish(mi, mi, joint, log_partition, reg_weight, reg_target, reg_distance)


def _js_fgan(st: RowStats) -> tuple[torch.Tensor, torch.Tensor]:
    """f-GAN JS bound (Nowozin 2016) E_P[-softplus(-T)] - E_Q[softplus(T)] -> (bound, E_Q term)."""
    k = st.num_cols
    marginal = st.offdiag_softplus.sum() / (st.diag.shape[0] * (k - 1))
    return -F.softplus(-st.diag).mean() - marginal, marginal


def js(scores, reg_weight=0.0, reg_target=0.0, reg_distance="squared") -> MIBoundOutput:
    """Critic trained with the JS bound, MI reported with NWJ (Poole's ``js_lower_bound``).

    ReJS regularizes JS's marginal term E_Q[softplus(T)] (``rejs``), so that is ``log_partition``
    here; the official target b is 0 on the Gaussian benchmark, 1 in the real-data scripts.

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    st = _stats(scores)
    train, marginal = _js_fgan(st)
    nwj_value = st.diag.mean() - (_lme_offdiag(st.offdiag_lse, st.num_cols) - 1.0).exp()
    return _finish(train, nwj_value, st.diag.mean(), marginal, reg_weight, reg_target, reg_distance)


SMILE_OBJECTIVES = ("js", "dv")


def smile(
    scores,
    clip: float | None = 5.0,
    objective: str = "js",
    clip_joint: bool = False,
    reg_weight=0.0,
    reg_target=0.0,
    reg_distance="squared",
) -> MIBoundOutput:
    """SMILE (Song & Ermon 2020, Eq. 17): E_P[T] - log E_Q[e^{clip(T, -tau, tau)}]. ReSMILE
    regularizes the *unclipped* log E_Q[e^T] (``resmile``).

    ``clip`` is tau; None is tau = infinity (SMILE's own default in ``estimators.py``: the value is
    then DV). ``objective`` is what trains the critic:

    * ``"js"``: the JS bound, the value only reported (Song & Ermon, ``smile-mi-estimator/
      estimators.py: smile_lower_bound`` returns ``js + (dv - js).detach()``);
    * ``"dv"``: the clipped value itself (ReMINE, ``Deconstructing-MINE/experiments.py:
      smile_lower_bound``, ``resmile_lower_bound``; ``MINE/losses.py: smile_loss``).

    ``clip_joint=True`` also clips E_P[T] (ReMINE's PyTorch ``experiments_self_contrastive.py:
    _smile``); the TF Gaussian code and Song & Ermon do not. tau = 5 is ``MINE/losses.py``'s default
    and one of Song & Ermon's {1, 5, inf}; ReMINE's official runs use 10.

    Args:
        scores: (K, K) critic scores, diagonal = joint pairs, or their :class:`RowStats`.
        clip: tau (None: infinity, the value is then DV).
        objective: "js" or "dv", what trains the critic.
        clip_joint: clip E_P[T] too.
        reg_weight: lambda of the ReMINE regularizer lambda * d(log_partition, C); 0: off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's ``_l2_distance``) or "absolute".

    Returns:
        :class:`MIBoundOutput` (``loss`` to minimize, ``mi`` the estimate in nats, ...).
    """
    if objective not in SMILE_OBJECTIVES:
        raise ValueError(f"smile objective must be one of {SMILE_OBJECTIVES}, got {objective!r}")
    st = _stats(scores, clip)
    diag, lse = _clipped(st, clip)
    joint = diag.mean() if clip_joint else st.diag.mean()
    mi = joint - _lme_offdiag(lse, st.num_cols)
    train = _js_fgan(st)[0] if objective == "js" else mi
    log_partition = _lme_offdiag(st.offdiag_lse, st.num_cols)
    return _finish(train, mi, joint, log_partition, reg_weight, reg_target, reg_distance)


ESTIMATORS: dict[str, Callable[..., MIBoundOutput]] = {
    "infonce": infonce,
    "dv": dv,
    "mine": mine,
    "nwj": nwj,
    "tuba": tuba,
    "js": js,
    "smile": smile,
}


def check_options(estimator: str, estimator_kwargs: dict) -> None:
    """Reject an unknown estimator, keyword, SMILE objective or a non-positive clip up front
    (construction time, not the first training step)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {sorted(ESTIMATORS)}")
    params = inspect.signature(ESTIMATORS[estimator]).parameters
    unknown = sorted(set(estimator_kwargs) - set(params))
    if unknown:
        raise ValueError(f"estimator {estimator!r} takes no option(s) {unknown}")
    objective = estimator_kwargs.get("objective", SMILE_OBJECTIVES[0])
    if objective not in SMILE_OBJECTIVES:
        raise ValueError(f"smile objective must be one of {SMILE_OBJECTIVES}, got {objective!r}")
    clip = estimator_kwargs.get("clip")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 (or null for no clip), got {clip}")


def stats_clip(estimator: str, estimator_kwargs: dict) -> float | None:
    """The clip level an estimator's row statistics must be computed with (None: no clip).

    Read from the kwargs, else from the estimator's own signature default (one default only).
    """
    fn = ESTIMATORS[estimator]
    param = inspect.signature(fn).parameters.get("clip")
    if param is None:
        return None
    return estimator_kwargs.get("clip", param.default)


class MIBoundLoss(torch.nn.Module):
    """One MI bound with its hyper-parameters and state; ``forward(scores)`` -> MIBoundOutput.

    The bounds are this module's functions (InfoNCE, DV, MINE, NWJ, TUBA, JS, SMILE; Poole et al.
    2019, google-research/google-research ``vbmi/vbmi_demo.ipynb``; Song & Ermon 2020,
    ermongroup/smile-mi-estimator ``estimators.py``) with the ReMINE regularizer (Choi & Lee,
    UAI 2022). MINE's moving average is the float64 buffer ``ema`` (so it is checkpointed); it
    is updated only in training mode. ``forward`` takes a K x K score matrix (diagonal = joint
    pairs) or its :class:`RowStats`; ``log_baseline`` for tuba is a forward argument.

    Args:
        estimator: infonce, dv, mine, nwj, tuba, js or smile.
        reg_weight: lambda of the regularizer lambda * d(log_partition, C); 0 turns it off.
        reg_target: C.
        reg_distance: d, "squared" (ReMINE's) or "absolute".
        **estimator_kwargs: the estimator's options: ``clip``, ``objective``, ``clip_joint``
            (smile), ``clip`` (nwj, tuba), ``momentum`` (mine).
    """

    def __init__(
        self,
        estimator: str,
        reg_weight: float = 0.0,
        reg_target: float = 0.0,
        reg_distance: str = "squared",
        **estimator_kwargs,
    ):
        super().__init__()
        check_options(estimator, estimator_kwargs)
        if reg_distance not in REG_DISTANCES:
            raise ValueError(f"reg_distance must be one of {REG_DISTANCES}")
        self.estimator = estimator
        self.reg = dict(reg_weight=reg_weight, reg_target=reg_target, reg_distance=reg_distance)
        self.estimator_kwargs = estimator_kwargs
        self.register_buffer("ema", torch.ones((), dtype=torch.float64))

    @property
    def clip(self) -> float | None:
        """Clip level the row statistics must be computed with (smile, clipped nwj/tuba)."""
        return stats_clip(self.estimator, self.estimator_kwargs)

    def forward(self, scores: torch.Tensor | RowStats, **kwargs) -> MIBoundOutput:
        fn = ESTIMATORS[self.estimator]
        if self.estimator == "mine":
            kwargs["ema"] = self.ema
        out = fn(scores, **self.estimator_kwargs, **kwargs, **self.reg)
        if out.state is not None and self.training:
            self.ema.copy_(out.state.detach())
        return out
