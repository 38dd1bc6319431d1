"""CorInfoMax loss (Ozsoy et al., NeurIPS 2022), as the official ``CovarianceLossv2``
(serdarozsoy/corinfomax-ssl, cifars-tiny/loss.py; the author confirms in issue #3 that it is the
loss behind the paper's numbers).

Per step, for each view v with L2-normalised embeddings z^v (N x D):
    mu_v  = la_mu * mu_v_prev + (1 - la_mu) * mean_n z^v_n          (la_mu weights the PREVIOUS)
    zc    = z^v - mu_v                                               (centred with the NEW mean)
    R_v   = la_R * R_v_prev + (1 - la_R) * zc^T zc / N               (biased batch covariance)
    L     = alpha * MSE(z^1, z^2) - cov_weight * [logdet(R_1 + eps I) + logdet(R_2 + eps I)] / D
then the state keeps R_v, mu_v detached. Gradient flows through the current batch only.

Precision: the official state is float64, so z - mu is promoted and the covariance and log-det
run in float64 even under AMP (methods.md 1.7). We do the same explicitly, outside autocast:
with eps = 1e-8 a half-precision log-det of a near-singular D x D matrix is unusable.

DDP: like the official ``FullGatherLayer`` path, embeddings are all-gathered with gradients, the
loss is computed on the global batch on every process, and every process's moving averages stay
identical without being synchronised.

Paper hyper-parameters (official README commands; SGD momentum 0.9, wd 1e-4, eps 1e-8, R_ini 1):
| data (encoder)          | epochs | batch | lr  | projector      | alpha | la_R = la_mu |
| CIFAR-10 (ResNet-18)    | 1000   | 512   | 0.5 | 2048-2048-64   | 250   | 0.01 |
| CIFAR-100 (ResNet-18)   | 1000   | 512   | 0.5 | 4096-4096-128  | 1000  | 0.01 |
| Tiny ImageNet (RN-50)   | 800    | 1024  | 0.5 | 4096-4096-128  | 500   | 0.1  |
| ImageNet-100 (RN-18)    | 400    | 1024  | 1.0 | 4096-4096-128  | 500   | 0.01 |
| ImageNet-1K (RN-50, BN) | 100    | 1536  | 0.2 | 8192-8192-512  | 2000  | 0.1  |
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from infossl.distributed import gather_cat


class CovState(NamedTuple):
    mu1: torch.Tensor
    mu2: torch.Tensor
    R1: torch.Tensor
    R2: torch.Tensor


def _update_view(
    z: torch.Tensor, mu_prev: torch.Tensor, R_prev: torch.Tensor, la_R: float, la_mu: float
) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.to(torch.float64)
    mu = la_mu * mu_prev + (1.0 - la_mu) * z.mean(dim=0)
    centred = z - mu
    R = la_R * R_prev + (1.0 - la_R) * (centred.T @ centred) / z.shape[0]
    return mu, R


def _logdet_and_cond(R: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    perturbed = R + eps * torch.eye(R.shape[0], dtype=R.dtype, device=R.device)
    return torch.logdet(perturbed), torch.linalg.cond(perturbed.detach())


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
    """One training step on (already gathered) embeddings; returns terms and the new state."""
    with torch.autocast(device_type=z1.device.type, enabled=False):
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        if normalize:  # --normalize_on in every published command
            z1 = F.normalize(z1, p=2, dim=1)
            z2 = F.normalize(z2, p=2, dim=1)
        alignment = F.mse_loss(z1, z2)
        prev = CovState(*(s.detach() for s in state))
        mu1, R1 = _update_view(z1, prev.mu1, prev.R1, la_R, la_mu)
        mu2, R2 = _update_view(z2, prev.mu2, prev.R2, la_R, la_mu)
        logdet1, cond1 = _logdet_and_cond(R1, eps)
        logdet2, cond2 = _logdet_and_cond(R2, eps)
        dim = z1.shape[1]
        cov_loss = -(logdet1 + logdet2) / dim
        loss = alpha * alignment.to(torch.float64) + cov_weight * cov_loss
    terms = {
        "loss": loss.float(),
        "alignment_mse": alignment.detach(),
        "logdet_view1": logdet1.detach(),
        "logdet_view2": logdet2.detach(),
        "cond_view1": cond1,
        "cond_view2": cond2,
    }
    return terms, CovState(mu1.detach(), mu2.detach(), R1.detach(), R2.detach())


class CorInfoMaxLoss(nn.Module):
    """Holds the four moving averages as float64 buffers: saved in every checkpoint, restored
    bit-exactly on resume. They update in training mode only; in eval mode the loss is computed
    from the current state without changing it (the official code has no eval path)."""

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
