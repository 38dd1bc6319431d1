"""Collapse diagnostics for an N x D matrix of embeddings (computed in float64).

- covariance rank: singular values of the centred matrix above S.max() * max(N, D) * eps, eps of
  the input's dtype (numpy.linalg.matrix_rank's tolerance; float32 rounding is not rank);
- effective rank (RankMe, Garrido et al., ICML 2023, Eq. 1): exp of the entropy of
  p_k = s_k / ||s||_1 + eps, singular values of the raw (uncentred) embedding matrix as the paper;
- alignment E||f(x) - f(y)||^alpha over positive pairs and uniformity
  log E exp(-t ||f(x) - f(y)||^2) over all pairs (Wang & Isola, ICML 2020, Eqs. 4-5),
  on l2-normalised embeddings;
- std of the l2-normalised embeddings: about 1/sqrt(D) when spread, near 0 when collapsed
  (lightly's ``std_of_l2_normalized``, the SimSiam paper's collapse measure).
Neither solo-learn nor lightly measures rank; this module is ours.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from lightly.utils.debug import std_of_l2_normalized

RANKME_EPS = 1e-7  # RankMe's epsilon in p_k


def _as64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def singular_values(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(_as64(x))


def covariance_rank(x: torch.Tensor, tol: float | None = None) -> int:
    eps = torch.finfo(x.dtype if x.is_floating_point() else torch.float64).eps
    x = _as64(x)
    s = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    if tol is None:
        tol = float(s.max()) * max(x.shape) * eps
    return int((s > tol).sum())


def effective_rank(x: torch.Tensor) -> float:
    s = singular_values(x)
    p = s / s.sum() + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    x, y = F.normalize(_as64(x), dim=1), F.normalize(_as64(y), dim=1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    x = F.normalize(_as64(x), dim=1)
    sq_dists = torch.pdist(x, p=2).pow(2)
    return float(sq_dists.mul(-t).exp().mean().log())


def spread(x: torch.Tensor) -> float:
    return float(std_of_l2_normalized(_as64(x)))


def metrics(x: torch.Tensor, x_view2: torch.Tensor | None = None) -> dict[str, float]:
    out = {
        "covariance_rank": float(covariance_rank(x)),
        "effective_rank": effective_rank(x),
        "std_l2_normalized": spread(x),
        "uniformity": uniformity(x),
    }
    if x_view2 is not None:
        out["alignment"] = alignment(x, x_view2)
    return out


def collapse_report(
    features: torch.Tensor,
    embeddings: torch.Tensor,
    embeddings_view2: torch.Tensor | None = None,
    features_view2: torch.Tensor | None = None,
) -> dict[str, float]:
    """``features/<metric>`` and ``embeddings/<metric>`` for TensorBoard's ``diag/`` group."""
    report = {f"features/{k}": v for k, v in metrics(features, features_view2).items()}
    report.update({f"embeddings/{k}": v for k, v in metrics(embeddings, embeddings_view2).items()})
    return report


def is_collapsed(effective_rank_value: float, dim: int, collapse_fraction: float) -> bool:
    return effective_rank_value < collapse_fraction * dim


def spectrum_image(spectra: dict[str, torch.Tensor]) -> np.ndarray:
    """log10 singular value against index, one line per name, as an H x W x 3 uint8 image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
    for name, values in spectra.items():
        v = _as64(values).clamp_min(1e-12).cpu().numpy()
        ax.plot(np.arange(1, len(v) + 1), np.log10(v), label=name)
    ax.set_xlabel("index")
    ax.set_ylabel("log10 singular value")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="raw", dpi=80)
    width, height = fig.canvas.get_width_height()
    plt.close(fig)
    return (
        np.frombuffer(buffer.getvalue(), dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()
    )
