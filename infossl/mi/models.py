"""The estimators behind :func:`infossl.mi.estimate`, built from the project's critics and bounds.

Each model has ``forward(x, y) -> (loss, mi)`` on a training batch and ``heldout(x, y)`` that
scores the *whole* held-out set and returns a :class:`HeldOut`: per-row terms from which the
estimate of any subset (or bootstrap resample) of held-out rows is recomputed without touching the
networks again.

Critic bounds: the held-out score matrix is N_test x N_test (every held-out y is a negative for
every held-out x), computed in row blocks and reduced at once to ``mi_bounds.RowStats``; InfoNCE is
then capped at log N_test instead of log batch. A bootstrap resamples rows of those statistics
(the negatives of a row stay the held-out set): it measures the sampling error of the joint term
and of the per-row partition terms, which dominates for N_test in the thousands.
"""

from __future__ import annotations

import torch
from torch import nn

from infossl.losses.critics import ConcatCritic, FLOSharedCritic, SeparableCritic, mlp
from infossl.losses.flo import flo, flo_per_row
from infossl.losses.mi_bounds import ESTIMATORS as BOUNDS
from infossl.losses.mi_bounds import MIBoundLoss, RowStats, row_statistics
from infossl.mi.anchor import AnchoredCritic
from infossl.mi.knife import KnifeModel
from infossl.mi.selection import HeldOut

CRITICS = ("separable", "concat")
# Cells of the (block, N_test, hidden) activation of a concat critic computed at once on held-out.
_EVAL_CELLS = 1 << 24


def _cat_stats(parts: list[RowStats]) -> RowStats:
    """Row blocks of one N x N matrix -> its RowStats (the blocks share num_cols and clip)."""
    first = parts[0]
    clipped = None
    if first.clipped_offdiag_lse is not None:
        clipped = torch.cat([p.clipped_offdiag_lse for p in parts])
    return RowStats(
        torch.cat([p.diag for p in parts]),
        torch.cat([p.offdiag_lse for p in parts]),
        torch.cat([p.offdiag_softplus for p in parts]),
        clipped,
        first.clip,
        first.num_cols,
    )


def _take(stats: RowStats, rows: torch.Tensor | None) -> RowStats:
    return stats if rows is None else stats.map(lambda t: t[rows])


def heldout_stats(score_fn, x, y, clip: float | None, block: int) -> RowStats:
    """RowStats of the full held-out matrix ``score_fn(x, y)``, built ``block`` rows at a time."""
    parts = [
        row_statistics(score_fn(x[s : s + block], y), diag_offset=s, clip=clip)
        for s in range(0, x.shape[0], block)
    ]
    return _cat_stats(parts)


def build_critic(
    critic: str, x_dim, y_dim, hidden_dim, layers, embed_dim, anchor: nn.Module | None = None
) -> nn.Module:
    """The critic network; with ``anchor`` (a fitted ``GaussianCritic``) it is the anchor plus the
    network in its ordinary initialisation (``AnchoredCritic``)."""
    if critic == "separable":
        net = SeparableCritic(x_dim, y_dim, hidden_dim, embed_dim, layers)
    elif critic == "concat":
        net = ConcatCritic(x_dim, y_dim, hidden_dim, layers)
    else:
        raise ValueError(f"unknown critic {critic!r}; choose from {CRITICS}")
    return net if anchor is None else AnchoredCritic(anchor, net)


def _block(critic: str, n: int, hidden_dim: int) -> int:
    """Held-out rows per block: all of them for a separable critic (an N x N product), else as
    many as keep a concat critic's (block, N, hidden) activation near 2^24 cells."""
    return n if critic == "separable" else max(1, _EVAL_CELLS // (n * hidden_dim))


class BoundModel(nn.Module):
    """A critic + one of ``mi_bounds.ESTIMATORS`` (TUBA adds Poole's learned baseline log a(x),
    as ``benchmarks/mi_estimation.py`` does)."""

    def __init__(
        self, name, x_dim, y_dim, critic, hidden_dim, layers, embed_dim, anchor=None, **bound_kwargs
    ):
        super().__init__()
        self.name, self.critic_kind, self.hidden_dim = name, critic, hidden_dim
        self.critic = build_critic(critic, x_dim, y_dim, hidden_dim, layers, embed_dim, anchor)
        self.bound = MIBoundLoss(name, **bound_kwargs)
        self.baseline = mlp(x_dim, hidden_dim, 1, layers) if name == "tuba" else None

    def _extra(self, x) -> dict:
        return {} if self.baseline is None else {"log_baseline": self.baseline(x).squeeze(-1)}

    def forward(self, x, y):
        out = self.bound(self.critic(x, y), **self._extra(x))
        return out.loss, out.mi

    @torch.no_grad()
    def heldout(self, x, y) -> HeldOut:
        block = _block(self.critic_kind, x.shape[0], self.hidden_dim)
        stats = heldout_stats(self.critic, x, y, self.bound.clip, block)
        extra = self._extra(x)
        fn = BOUNDS[self.name]
        kwargs = {**self.bound.estimator_kwargs, **self.bound.reg}

        def value(rows):
            ex = {k: v if rows is None else v[rows] for k, v in extra.items()}
            return fn(_take(stats, rows), **kwargs, **ex).mi

        return HeldOut(x.shape[0], value)


class FLOModel(nn.Module):
    """FLO (``losses/flo.py``): concat -> FLO's shared network with (g, u) heads; separable -> the
    separable g plus a u-MLP on the joint pair (the two forms of ``benchmarks/mi_estimation.py``).

    ``u_bound`` / ``score_bound`` (nats) bound the u head and the g scores smoothly,
    v -> b tanh(v / b): see ``_bounded``."""

    def __init__(
        self,
        x_dim,
        y_dim,
        critic,
        hidden_dim,
        layers,
        embed_dim,
        u_bound=None,
        score_bound=None,
        anchor=None,
        **reg,
    ):
        super().__init__()
        self.critic_kind, self.hidden_dim, self.reg = critic, hidden_dim, reg
        self.u_bound, self.score_bound = u_bound, score_bound
        # Anchored, g adds the Gaussian log ratio and u subtracts it on the pair: u's optimum for
        # that g is -log ratio (up to the row's log-mean-exp, ~0), so FLO starts near the
        # Gaussian's value.
        self.anchor = anchor
        if critic == "concat":
            self.net = FLOSharedCritic(x_dim, y_dim, hidden_dim, layers)
        else:
            self.net = build_critic(critic, x_dim, y_dim, hidden_dim, layers, embed_dim)
            self.u_net = mlp(x_dim + y_dim, hidden_dim, 1, layers)

    @staticmethod
    def _bounded(v, bound):
        # The FLO term of a row is u + exp(-u + contrast), contrast = log mean_j e^{g_ij} - g_ii:
        # the only estimator term that exponentiates both heads. ReLU networks grow linearly away
        # from the training data, so a held-out outlier (a heavy-tailed coordinate after
        # standardization) drives -u + contrast far past 88 and the float32 exp to inf. Bounding
        # both caps the exponent at u_bound + 2 score_bound; u's optimum is -PMI, so u_bound must
        # exceed the largest pointwise MI that matters.
        return v if bound is None else bound * torch.tanh(v / bound)

    def _u(self, x, y):
        u = self.net.u(x, y) if self.critic_kind == "concat" else self.u_net(torch.cat([x, y], 1))
        u = u.reshape(-1)
        if self.anchor is not None:
            u = u - self.anchor.aligned(x, y)
        return self._bounded(u, self.u_bound)

    def _g(self, x, y):
        g = self.net(x, y)[0] if self.critic_kind == "concat" else self.net(x, y)
        if self.anchor is not None:
            g = g + self.anchor(x, y)
        return self._bounded(g, self.score_bound)

    def forward(self, x, y):
        out = flo(self._g(x, y), self._u(x, y), **self.reg)
        return out["loss"], out["mi"]

    @torch.no_grad()
    def heldout(self, x, y) -> HeldOut:
        block = _block(self.critic_kind, x.shape[0], self.hidden_dim)
        per_row = flo_per_row(heldout_stats(self._g, x, y, None, block), self._u(x, y))

        def value(rows):
            return -(per_row if rows is None else per_row[rows]).mean()

        return HeldOut(x.shape[0], value)


ESTIMATORS = (*BOUNDS, "flo", "knife", "knife_joint")


def build_model(
    name: str, x_dim: int, y_dim: int, critic, hidden_dim, layers, embed_dim, anchor=None, **kw
):
    """The model for estimator ``name``; ``anchor`` (critics and FLO's g; KNIFE has none) is a
    fitted ``GaussianCritic`` the critic starts from; ``kw`` are the estimator's own options
    (``clip`` for smile, ``momentum`` for mine, ``reg_weight``/``reg_target``/``reg_distance`` for
    the ReMINE regularizer, ``u_bound`` for flo, ``modes`` and KNIFE's flags for knife)."""
    if name in BOUNDS:
        return BoundModel(name, x_dim, y_dim, critic, hidden_dim, layers, embed_dim, anchor, **kw)
    if name == "flo":
        return FLOModel(x_dim, y_dim, critic, hidden_dim, layers, embed_dim, anchor=anchor, **kw)
    if name in ("knife", "knife_joint"):
        return KnifeModel(x_dim, y_dim, hidden_dim, joint=name == "knife_joint", **kw)
    raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
