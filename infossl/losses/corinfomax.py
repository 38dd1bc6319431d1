"""CorInfoMax loss (Ozsoy et al., NeurIPS 2022, arXiv 2209.07999), as the official code.

The official ``CovarianceLossv2`` (serdarozsoy/corinfomax-ssl @ c0b917eb,
``cifars-tiny/loss.py``, identical in ``imagenet100_*/pretrain/loss.py`` and
``imagenet1k/loss.py``; the author confirms in issue #3 that it is the loss behind the paper's
numbers).

Per step, for each view v with embeddings z^v (N x D), L2-normalised per row first (the official
``--normalize_on``, on in every published command):
    mu_v  = la_mu * mu_v_prev + (1 - la_mu) * mean_n z^v_n          (la_mu weights the PREVIOUS)
    zc    = z^v - mu_v                                               (centred with the NEW mean)
    R_v   = la_R * R_v_prev + (1 - la_R) * zc^T zc / N               (biased 1/N batch covariance)
    L     = alpha * MSE(z^1, z^2) - cov_weight * [logdet(R_1 + eps I) + logdet(R_2 + eps I)] / D
then the state keeps mu_v, R_v detached, so the gradient flows through the current batch only.
One covariance per view, not pooled (the pooled ``CovarianceLoss`` is an unused earlier version).

Paper hyper-parameters (official README commands; SGD momentum 0.9, weight decay 1e-4,
eps = ``R_eps_weight`` = 1e-8, R_ini = 1, cov_weight = 1, LinearWarmupCosineAnnealingLR stepped
per epoch from warmup_start_lr 3e-3; "g" = global batch summed over 8 GPUs; RN = ResNet):

| data (encoder)     | epochs | batch  | lr  | projector         | alpha | la_R,la_mu| min_lr,warm |
|--------------------|--------|--------|-----|-------------------|-------|-----------|-------------|
| CIFAR-10 (RN-18)   | 1000   | 512    | 0.5 | 2048-2048-64      | 250   | 0.01      | 1e-6, 10 ep |
| CIFAR-100 (RN-18)  | 1000   | 512    | 0.5 | 4096-4096-128     | 1000  | 0.01      | 1e-6, 10 ep |
| Tiny ImNet (RN-50) | 800    | 1024   | 0.5 | 4096-4096-128     | 500   | 0.1       | 1e-6, 10 ep |
| ImNet-100 (RN-18)  | 400    | 1024 g | 1.0 | 4096-4096-128     | 500   | 0.01      | 5e-3, 10 ep |
| ImNet-100 (RN-50)  | 200    | 1024 g | 1.0 | 4096-4096-128     | 500   | 0.01      | 5e-3, 5 ep  |
| ImNet-1K (RN-50)   | 100    | 1536 g | 0.2 | 8192-8192-512 +BN | 2000  | 0.1       | 1e-6, 10 ep |

(la_R = la_mu in every command. ImageNet-1K runs with ``--amp``. The projectors are
Linear-ReLU-Linear-ReLU-Linear(bias=False), with BatchNorm after each hidden Linear only for
ImageNet-1K.)

Precision: the official state is float64, so ``z - mu`` is promoted and the covariance and log-det
run in float64 even under AMP (float64 ops are not autocast-eligible in PyTorch). We do the
same explicitly, outside autocast: with eps = 1e-8 the small eigenvalues of R sit near 1e-8 while
the large ones are O(1/D), which half precision (and barely float32) cannot resolve.

DDP: as the official ``FullGatherLayer`` path, the embeddings are all-gathered with gradients
(:func:`infossl.distributed.gather_cat`), the loss runs on the global batch on every process, and
every process's moving averages stay identical without being synchronised.

Eval mode (the official code has none): the loss is computed from the current state exactly as a
training step would compute it, but the moving averages are not updated.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from infossl.distributed import gather_cat


class CovState(NamedTuple):
    """The four moving averages of CovarianceLossv2 (float64)."""

    mu1: torch.Tensor
    mu2: torch.Tensor
    R1: torch.Tensor
    R2: torch.Tensor


def _update_view(
    z: torch.Tensor, mu_prev: torch.Tensor, R_prev: torch.Tensor, la_R: float, la_mu: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean first, centre with the new mean, then covariance (CovarianceLossv2.forward order)."""
    z = z.to(torch.float64)
    mu = la_mu * mu_prev + (1.0 - la_mu) * z.mean(dim=0)
    centred = z - mu
    R = la_R * R_prev + (1.0 - la_R) * (centred.T @ centred) / z.shape[0]
    return mu, R


def _logdet_and_cond(R: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    perturbed = R + eps * torch.eye(R.shape[0], dtype=R.dtype, device=R.device)
    # R + eps I is symmetric positive definite: its 2-norm condition number is the ratio of its
    # extreme eigenvalues, which eigvalsh gives more cheaply than the SVD inside linalg.cond.
    eigenvalues = torch.linalg.eigvalsh(perturbed.detach())
    return torch.logdet(perturbed), eigenvalues[-1] / eigenvalues[0]


def _check_inputs(z1: torch.Tensor, z2: torch.Tensor, state: CovState) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"CorInfoMax needs two N x D views; got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    if z1.shape[1] != state.mu1.shape[0]:
        raise ValueError(f"embedding dim {z1.shape[1]} != loss dim {state.mu1.shape[0]}")
    if any(s.dtype != torch.float64 for s in state):
        raise TypeError(
            "CorInfoMax moving averages must stay float64 (got "
            f"{state.R1.dtype}); use a *-mixed precision, never a true half-precision model cast"
        )


def corinfomax_step(
    z1: torch.Tensor,
    z2: torch.Tensor,
    state: CovState,
    *,
    alpha: float,
    la_R: float,
    la_mu: float,
    eps: float,
    cov_weight: float = 1.0,
    normalize: bool = True,
) -> tuple[dict[str, torch.Tensor], CovState]:
    """One CorInfoMax step on (already gathered) embeddings; ``state`` is left untouched.

    Returns ``(terms, new_state)``. ``terms["loss"]`` carries the gradient (dtype float32, or
    float64 for float64 inputs); ``alignment_mse``, ``logdet_view{1,2}`` and ``cond_view{1,2}``
    (condition numbers of R_v + eps I) are detached. ``new_state`` is detached float64.
    """
    _check_inputs(z1, z2, state)
    # Outside autocast (float64 ops are not autocast-eligible): normalize and MSE run in float32
    # (what autocast would pick for them anyway), the covariance and log-det in float64 as in
    # the official code.
    with torch.autocast(device_type=z1.device.type, enabled=False):
        dtype = torch.promote_types(torch.promote_types(z1.dtype, z2.dtype), torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        if normalize:
            z1 = F.normalize(z1, p=2, dim=1)
            z2 = F.normalize(z2, p=2, dim=1)
        alignment = F.mse_loss(z1, z2)  # invariance_loss: mean over N * D
        prev = CovState(*(s.detach() for s in state))
        mu1, R1 = _update_view(z1, prev.mu1, prev.R1, la_R, la_mu)
        mu2, R2 = _update_view(z2, prev.mu2, prev.R2, la_R, la_mu)
        logdet1, cond1 = _logdet_and_cond(R1, eps)
        logdet2, cond2 = _logdet_and_cond(R2, eps)
        cov_loss = -(logdet1 + logdet2) / z1.shape[1]
        loss = alpha * alignment.to(torch.float64) + cov_weight * cov_loss
    terms = {
        "loss": loss.to(dtype),
        "alignment_mse": alignment.detach(),
        "logdet_view1": logdet1.detach(),
        "logdet_view2": logdet2.detach(),
        "cond_view1": cond1,
        "cond_view2": cond2,
    }
    return terms, CovState(mu1.detach(), mu2.detach(), R1.detach(), R2.detach())


class CorInfoMaxLoss(nn.Module):
    """CorInfoMax loss: alpha * MSE(z1, z2) - [logdet(R1 + eps I) + logdet(R2 + eps I)] / D.

    Ozsoy et al., "Self-Supervised Learning with an Information Maximization Criterion",
    NeurIPS 2022; the official ``CovarianceLossv2`` (serdarozsoy/corinfomax-ssl,
    ``cifars-tiny/loss.py``). The four moving averages are float64 buffers ``mu1, mu2, R1, R2``,
    saved in every checkpoint and restored bit-exactly on resume. They update in training mode
    only; in eval mode the loss uses the current state without changing it. With
    ``gather_distributed`` the embeddings are all-gathered (with gradients) first, so the loss
    sees the global batch and every process keeps identical moving averages. Each process's
    gradient w.r.t. its local rows is then world_size x the one-process gradient, which DDP's
    gradient averaging turns back into the one-process gradient.

    Args:
        dim: embedding width D.
        alpha: weight of the alignment MSE (the paper's alpha; 250 on CIFAR-10).
        la_R: weight of the previous covariance in its moving average (lambda_R).
        la_mu: weight of the previous mean in its moving average (lambda_mu).
        eps: added to the covariance diagonal before the log-determinant.
        R_ini: the covariances start at R_ini * I.
        cov_weight: weight of the log-determinant term.
        normalize: L2-normalise each embedding first (the official ``--normalize_on``).
        gather_distributed: all-gather the embeddings of every process (no-op on one).

    ``forward(z1, z2)`` takes two (N, D) views and returns a dict: ``loss`` (with gradient),
    ``alignment_mse``, ``logdet_view1``, ``logdet_view2``, ``cond_view1``, ``cond_view2``
    (condition numbers of R_v + eps I), all but ``loss`` detached.
    """

    def __init__(
        self,
        dim: int,
        alpha: float = 250.0,
        la_R: float = 0.01,
        la_mu: float = 0.01,
        eps: float = 1e-8,
        R_ini: float = 1.0,
        cov_weight: float = 1.0,
        normalize: bool = True,
        gather_distributed: bool = True,
    ):
        super().__init__()
        self.alpha, self.la_R, self.la_mu, self.eps = alpha, la_R, la_mu, eps
        self.cov_weight, self.normalize = cov_weight, normalize
        self.gather_distributed = gather_distributed
        eye = torch.eye(dim, dtype=torch.float64)
        self.register_buffer("mu1", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("mu2", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("R1", R_ini * eye)
        self.register_buffer("R2", R_ini * eye.clone())

    @property
    def state(self) -> CovState:
        return CovState(self.mu1, self.mu2, self.R1, self.R2)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.gather_distributed:
            z1, z2 = gather_cat(z1), gather_cat(z2)
        terms, new = corinfomax_step(
            z1,
            z2,
            self.state,
            alpha=self.alpha,
            la_R=self.la_R,
            la_mu=self.la_mu,
            eps=self.eps,
            cov_weight=self.cov_weight,
            normalize=self.normalize,
        )
        if self.training:
            for name, value in new._asdict().items():
                getattr(self, name).copy_(value)
        return terms

    def extra_repr(self) -> str:
        return (
            f"dim={self.mu1.shape[0]}, alpha={self.alpha}, la_R={self.la_R}, la_mu={self.la_mu}, "
            f"eps={self.eps}, cov_weight={self.cov_weight}, normalize={self.normalize}"
        )
