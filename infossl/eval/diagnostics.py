"""Collapse diagnostics for an N x D matrix of embeddings.

Every metric runs in float64 on the input's device. Float64 tensors are never recast by
``torch.autocast`` (only float32 inputs are eligible), so calling these inside an autocast
region is safe. A matrix holding NaN or inf gives NaN metrics instead of an exception, so a
diverged run is reported by the monitor rather than crashing it.

- ``covariance_rank``: numerical rank of the covariance, i.e. the number of singular values of
  the *centred* matrix above ``tol``. Default ``tol = S.max() * max(N, D) * eps`` as
  ``numpy.linalg.matrix_rank``, with ``eps`` the machine epsilon of the *input* dtype
  (float32: 1.19e-7, float64: 2.22e-16): the SVD runs in float64, but float32 rounding of the
  input is noise, not rank. A centred N x D matrix has rank at most min(N - 1, D), so with
  fewer samples than dimensions (512 validation samples, 2048-d ResNet-50 features) the value
  is capped by the sample count, not by the representation: ``covariance_rank_max`` reports
  that cap beside it.
- ``effective_rank``: RankMe (Garrido et al., ICML 2023, Eq. 1): ``exp(-sum_k p_k log p_k)`` with
  ``p_k = s_k / ||s||_1 + 1e-7``, ``s`` the singular values of the *raw, uncentred* embedding
  matrix, as the paper defines it (a large common offset therefore reads as rank ~1).
- ``alignment`` ``E ||f(x) - f(y)||^alpha`` over positive pairs and ``uniformity``
  ``log E exp(-t ||f(x) - f(y)||^2)`` over all distinct pairs (Wang & Isola, ICML 2020,
  Eqs. 4-5, official ``align_loss`` / ``uniform_loss``), on l2-normalised rows.
- ``std_of_l2_normalized``: mean over dimensions of the std of the l2-normalised rows (SimSiam,
  Chen & He 2021, Sec. 4.1), lightly's ``lightly.utils.debug.std_of_l2_normalized``: about
  ``1/sqrt(D)`` when spread, 0 when collapsed to one vector.

Neither solo-learn nor lightly measures rank or alignment/uniformity; those parts are ours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from lightly.utils.debug import std_of_l2_normalized as _lightly_std_of_l2_normalized

RANKME_EPS = 1e-7  # RankMe's epsilon in p_k (Garrido et al. 2023, Eq. 1)
UNIFORMITY_MAX_SAMPLES = 4096  # pairs grow as N^2: 4096 rows -> 8.4M pairs


def _as64(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"expected an N x D matrix, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def singular_values(x: torch.Tensor) -> torch.Tensor:
    """Singular values (descending, float64) of the raw N x D matrix: the spectrum RankMe uses.
    NaN-filled when ``x`` is not finite."""
    x = _as64(x)
    if not _finite(x):
        return torch.full((min(x.shape),), math.nan, dtype=torch.float64, device=x.device)
    return torch.linalg.svdvals(x)


def covariance_rank(x: torch.Tensor, tol: float | None = None) -> int:
    """Rank of the centred matrix: its singular values above ``tol``.

    A dimensional collapse (Jing et al., ICLR 2022) shows as a rank far below the dimension.

    Args:
        x: (N, D) features or embeddings.
        tol: threshold; None is NumPy's ``matrix_rank`` default, s_max * max(N, D) * eps.

    Returns:
        The rank, or -1 when ``x`` is not finite.
    """
    eps = torch.finfo(x.dtype if x.is_floating_point() else torch.float64).eps
    x = _as64(x)
    if not _finite(x):
        return -1
    s = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    if s.numel() == 0:
        return 0
    if tol is None:
        tol = float(s.max()) * max(x.shape) * eps
    return int((s > tol).sum())


def covariance_rank_max(x: torch.Tensor) -> int:
    """The largest ``covariance_rank`` an N x D matrix can have: min(N - 1, D) (centring
    removes one dimension of the N rows), 0 without rows."""
    n, d = x.shape
    return max(0, min(n - 1, d))


def effective_rank(x: torch.Tensor) -> float:
    """RankMe effective rank of the raw (uncentred) matrix: exp of the entropy of its normalised
    singular values.

    Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised
    Representations by Their Rank", ICML 2023, Eq. 1 (epsilon 1e-7).

    Args:
        x: (N, D) features or embeddings.

    Returns:
        In [1, min(N, D)] up to the epsilon; 0.0 for an all-zero matrix (no direction at all),
        NaN when ``x`` is not finite.
    """
    s = singular_values(x)
    if not _finite(s):
        return math.nan
    if float(s.sum()) == 0.0:
        return 0.0
    p = s / s.sum() + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """Alignment of two views: mean of ``||x_i/|x_i| - y_i/|y_i| ||^alpha`` over paired rows.

    Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", ICML 2020 (SsnL/align_uniform, ``align_uniform/__init__.py:
    align_loss``). Lower is more invariant.

    Args:
        x: (N, D) embeddings of view 1.
        y: (N, D) embeddings of view 2, row i paired with ``x[i]``.
        alpha: the exponent (2 in the paper).

    Returns:
        The mean, a float.
    """
    if x.shape != y.shape:
        raise ValueError(f"alignment needs paired rows, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = F.normalize(_as64(x), dim=1), F.normalize(_as64(y), dim=1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(
    x: torch.Tensor, t: float = 2.0, max_samples: int | None = UNIFORMITY_MAX_SAMPLES
) -> float:
    """Uniformity: ``log`` of the mean of ``exp(-t ||u_i - u_j||^2)`` over all pairs ``i < j``.

    Wang & Isola, ICML 2020 (SsnL/align_uniform, ``align_uniform/__init__.py: uniform_loss``),
    on the l2-normalised rows u. Lower is more uniform on the sphere. Above ``max_samples`` rows
    the mean runs over a fixed (seed 0) random subset of that many rows: an unbiased estimate of
    the inner mean at bounded memory.

    Args:
        x: (N, D) embeddings.
        t: the Gaussian potential's scale (2 in the paper).
        max_samples: row cap (None: all rows).

    Returns:
        The log-mean, a float.
    """
    x = _as64(x)
    if max_samples is not None and x.shape[0] > max_samples:
        generator = torch.Generator().manual_seed(0)
        x = x[torch.randperm(x.shape[0], generator=generator)[:max_samples].to(x.device)]
    x = F.normalize(x, dim=1)
    sq_dists = torch.pdist(x, p=2).pow(2)
    return float(sq_dists.mul(-t).exp().mean().log())


def std_of_l2_normalized(x: torch.Tensor) -> float:
    """lightly's ``std_of_l2_normalized`` (``std(normalize(x), dim=0).mean()``, unbiased std),
    evaluated in float64."""
    return float(_lightly_std_of_l2_normalized(_as64(x)))


def metrics(x: torch.Tensor, x_view2: torch.Tensor | None = None) -> dict[str, float]:
    """All scalar diagnostics of one matrix; ``alignment`` only when a second view is given."""
    cap = float(covariance_rank_max(_as64(x)))
    if not _finite(_as64(x)):
        names = ["covariance_rank", "effective_rank", "std_l2_normalized", "uniformity"]
        out = {name: math.nan for name in names + (["alignment"] if x_view2 is not None else [])}
        return {**out, "covariance_rank_max": cap}
    out = {
        "covariance_rank": float(covariance_rank(x)),
        "covariance_rank_max": cap,
        "effective_rank": effective_rank(x),
        "std_l2_normalized": std_of_l2_normalized(x),
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
    """``features/<metric>`` and ``embeddings/<metric>`` (metrics above), for TensorBoard's
    ``diag/`` group. ``<metric>`` is one of covariance_rank, covariance_rank_max (its cap
    min(N - 1, D)), effective_rank, std_l2_normalized, uniformity, and alignment where the
    second view is given."""
    report = {f"features/{k}": v for k, v in metrics(features, features_view2).items()}
    report.update({f"embeddings/{k}": v for k, v in metrics(embeddings, embeddings_view2).items()})
    return report


def is_collapsed(effective_rank_value: float, dim: int, collapse_fraction: float) -> bool:
    """True when the effective rank is below ``collapse_fraction * dim`` (False for NaN)."""
    return effective_rank_value < collapse_fraction * dim


def spectrum_image(
    spectra: dict[str, torch.Tensor], width: int = 400, height: int = 256
) -> np.ndarray:
    """log10 singular value against index (1-based), one line per name, as an H x W x 3 uint8
    image for ``SummaryWriter.add_image(..., dataformats="HWC")``. Uses an Agg canvas directly,
    so the process's pyplot backend is left alone; values <= 1e-12 are clipped there."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 80
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in spectra.items():
        v = values.detach().to(torch.float64).clamp_min(1e-12).cpu().numpy()
        ax.plot(np.arange(1, len(v) + 1), np.log10(v), label=name)
    ax.set_xlabel("index")
    ax.set_ylabel("log10 singular value")
    if spectra:
        ax.legend()
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
