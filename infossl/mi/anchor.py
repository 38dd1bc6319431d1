"""The Gaussian anchor of ``infossl.mi.estimate``'s critics, fitted by reduced-rank CCA.

Training starts from the critic that is optimal when (X, Y) is jointly Gaussian, and the network
learns what that critic misses.

A critic network trained from a random start on a few thousand pairs falls short of the truth on
exactly the tasks a closed form solves: on bmi's 25-dimensional Gaussians a separable InfoNCE
critic stopped 0.12-0.20 nats short, and at 5.4 nats 0.6 short (BENCHMARKS.md), while the Gaussian
fitted to the same pairs is the right model. Anchored, the critic is that Gaussian's log density
ratio plus the network, whose weight decay then shrinks toward the Gaussian instead of toward a
constant critic; on data that is not Gaussian the fitted Gaussian is a valid, looser critic that
training improves on, and the held-out bound stays a bound.

The Gaussian is fitted by CCA in reduced rank (Hotelling 1936; Bach & Jordan 2005 for its
probabilistic form): with canonical variates u = A^T (x - mean), v = B^T (y - mean) and canonical
correlations rho_k, its log density ratio is a sum over the k kept pairs
    sum_k [ -1/2 log(1 - rho_k^2) + rho_k u_k v_k / (1 - rho_k^2)
            - rho_k^2 (u_k^2 + v_k^2) / (2 (1 - rho_k^2)) ],
whose mean over the joint pairs is the Gaussian MI -1/2 sum_k log(1 - rho_k^2) (what bmi's CCA
estimator reports at full rank). The rank is chosen by cross-validation *within the training part*
(the InfoNCE bound of each rank on held-back folds), so the held-out part stays untouched: at full
rank the noise of 625 cross-covariances estimated from 2 500 pairs cost bmi's 25 x 25 Gaussian
tasks 0.12-0.13 nats of held-out InfoNCE (their samples drawn with seed 3); rank 0 (no anchor) is a
candidate, as on Student-t data with no linear dependence. Written here because scikit-learn's
``CCA`` is the iterative PLS form (NIPALS), not the closed-form SVD of the whitened
cross-covariance, and has no density ratio.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Canonical correlations are clipped below 1 so that y = x (infinite MI) stays finite.
_MAX_RHO = 1.0 - 1e-4


def _inv_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """cov^(-1/2) by eigendecomposition; eigenvalues floored so constant or duplicated columns
    (a singular covariance) are whitened to 0 instead of failing."""
    w, v = torch.linalg.eigh(cov)
    w = w.clamp(min=1e-6 * float(w.max().clamp(min=1e-12)))
    return (v / w.sqrt()) @ v.T


def canonical_pairs(x: torch.Tensor, y: torch.Tensor):
    """(mean_x, mean_y, A, B, rho): canonical directions (columns, strongest first) and the
    canonical correlations of the samples, in float64."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc, yc = x - mean_x, y - mean_y
    n = x.shape[0]
    wx, wy = _inv_sqrt(xc.T @ xc / n), _inv_sqrt(yc.T @ yc / n)
    u, rho, vh = torch.linalg.svd(wx @ (xc.T @ yc / n) @ wy)
    k = rho.shape[0]
    return mean_x, mean_y, wx @ u[:, :k], wy @ vh[:k].T, rho.clamp(0.0, _MAX_RHO)


def _log_ratio(u: torch.Tensor, v: torch.Tensor, rho: torch.Tensor, aligned: bool):
    one_minus = 1.0 - rho**2
    const = -0.5 * torch.log(one_minus).sum()
    a, b = rho / one_minus, rho**2 / (2 * one_minus)
    qu, qv = (b * u**2).sum(-1), (b * v**2).sum(-1)
    if aligned:
        return const + (a * u * v).sum(-1) - qu - qv
    return const + (u * a) @ v.T - qu[:, None] - qv[None]


def _infonce(scores: torch.Tensor) -> float:
    n = scores.shape[0]
    return float((scores.diagonal() - torch.logsumexp(scores, 1)).mean() + math.log(n))


def cross_validated_rank(x: torch.Tensor, y: torch.Tensor, folds: int = 5) -> int:
    """The rank (0 to min(dx, dy)) whose reduced-rank Gaussian critic has the largest InfoNCE
    bound summed over ``folds`` contiguous held-back folds of (x, y), each fitted on the rest
    (0 when there are too few pairs for the folds)."""
    n, kmax = x.shape[0], min(x.shape[1], y.shape[1])
    if n < 2 * folds:  # folds of under 2 pairs have no negatives to score
        return 0
    score = torch.zeros(kmax + 1, dtype=torch.float64)  # rank 0 scores 0: a constant critic
    edges = [round(i * n / folds) for i in range(folds + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        keep = torch.ones(n, dtype=torch.bool, device=x.device)
        keep[lo:hi] = False
        mean_x, mean_y, a, b, rho = canonical_pairs(x[keep], y[keep])
        u = (x[lo:hi].to(torch.float64) - mean_x) @ a
        v = (y[lo:hi].to(torch.float64) - mean_y) @ b
        # The log ratio is a sum over canonical pairs: add one pair's term per rank, so scoring
        # every rank costs O(kmax m^2) for a fold of m pairs, not O(kmax^2 m^2).
        scores = torch.zeros(hi - lo, hi - lo, dtype=torch.float64, device=x.device)
        for k in range(1, kmax + 1):
            pair = slice(k - 1, k)
            scores += _log_ratio(u[:, pair], v[:, pair], rho[pair], aligned=False)
            score[k] += _infonce(scores)
    return int(score.argmax())


class GaussianCritic(nn.Module):
    """Log density ratio of the reduced-rank Gaussian fitted to (x, y); fixed (buffers only).

    Args:
        x, y: (N, dx), (N, dy) pairs to fit (the training part).
        rank: canonical pairs kept; "cv" chooses it by :func:`cross_validated_rank`; None keeps
            all (the full-rank Gaussian).
        offset: added to every score (NWJ's optimal critic is 1 + log ratio).
    """

    def __init__(self, x, y, rank: int | str | None = "cv", offset: float = 0.0, folds: int = 5):
        super().__init__()
        if rank == "cv":
            rank = cross_validated_rank(x, y, folds)
        mean_x, mean_y, a, b, rho = canonical_pairs(x, y)
        rank = rho.shape[0] if rank is None else rank
        self.rank, self.offset = rank, offset
        dtype = x.dtype
        self.register_buffer("mean_x", mean_x.to(dtype))
        self.register_buffer("mean_y", mean_y.to(dtype))
        self.register_buffer("proj_x", a[:, :rank].to(dtype))
        self.register_buffer("proj_y", b[:, :rank].to(dtype))
        self.register_buffer("rho", rho[:rank].to(dtype))

    @property
    def mi(self) -> float:
        """The fitted Gaussian's MI, -1/2 sum_k log(1 - rho_k^2), in nats."""
        return float(-0.5 * torch.log1p(-(self.rho.double() ** 2)).sum())

    def _variates(self, x, y):
        return (x - self.mean_x) @ self.proj_x, (y - self.mean_y) @ self.proj_y

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(n, m) scores of every pair (x_i, y_j)."""
        return _log_ratio(*self._variates(x, y), self.rho, aligned=False) + self.offset

    def aligned(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(n,) scores of the aligned pairs (x_i, y_i): the diagonal of ``forward``."""
        return _log_ratio(*self._variates(x, y), self.rho, aligned=True) + self.offset


class AnchoredCritic(nn.Module):
    """``anchor(x, y) + residual(x, y)``: a fitted :class:`GaussianCritic` plus a critic network
    (separable or concat) in its ordinary initialisation. (A zero-initialised residual learned
    more slowly where the anchor is no help: InfoNCE on bmi's Student-t 5 x 5 task reached 0.23
    nats instead of 0.35, on samples the benchmark's table does not use.)"""

    def __init__(self, anchor: nn.Module, residual: nn.Module):
        super().__init__()
        self.anchor, self.residual = anchor, residual

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.anchor(x, y) + self.residual(x, y)
