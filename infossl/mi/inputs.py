"""The paired samples ``infossl.mi.estimate`` takes: checks and per-column preprocessing.

Also the ``--anchor`` flag of its command lines (``python -m infossl.mi``, the bmi benchmark)
mapped to ``estimate``'s keyword.

NumPy and SciPy only (no torch), so that bmi's environment (``benchmarks/mi_beyond_normal.py
neural --preprocess copula``) applies the same copula transform to bmi's own estimators.
"""

from __future__ import annotations

import numpy as np

PREPROCESS = ("standardize", "copula", "none")


class MIInputError(ValueError):
    """Input ``estimate`` cannot use (NaNs, mismatched N, too few samples, unknown names)."""


def _as_matrix(a, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise MIInputError(f"{name} is not a numeric array ({err})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise MIInputError(f"{name} must be (N,) or (N, dim), got shape {arr.shape}")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise MIInputError(f"{name} has {bad} non-finite values (NaN or inf)")
    return arr


def preprocess_columns(a: np.ndarray, how: str, name: str) -> np.ndarray:
    """``a`` per column: "standardize" (zero mean, unit variance), "copula" (normal scores) or
    "none"."""
    if how == "none":
        return a
    if how == "copula":
        # Per-column ranks -> standard normal quantiles (Gaussian copula, Ince et al. 2017): a
        # strictly monotone map of each coordinate, which leaves I(X; Y) unchanged and removes
        # heavy tails and marginal distortions (bmi's half-cube, asinh, normal-CDF) before training.
        from scipy.special import ndtri
        from scipy.stats import rankdata

        return ndtri((rankdata(a, axis=0) - 0.5) / a.shape[0])
    std = a.std(axis=0)
    if (std == 0).any():
        raise MIInputError(f"{name} has a constant column ({int(np.argmax(std == 0))}): no MI")
    return (a - a.mean(axis=0)) / std


def check_pairs(x, y, batch_size, train_fraction, preprocess):
    """Arrays as float64 (N, dim) matrices, or MIInputError with one line."""
    if preprocess not in PREPROCESS:
        raise MIInputError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
    if not 0.0 < train_fraction < 1.0:
        raise MIInputError(f"train_fraction must be in (0, 1), got {train_fraction}")
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise MIInputError(f"x has {x.shape[0]} samples and y has {y.shape[0]}: they must pair up")
    n_train = int(x.shape[0] * train_fraction)
    if n_train < batch_size or x.shape[0] - n_train < 2:
        raise MIInputError(
            f"{x.shape[0]} samples give {n_train} for training, fewer than batch_size "
            f"{batch_size} (or under 2 held out): pass more samples or a smaller batch_size"
        )
    return x, y, n_train


def anchor_keyword(flag: str | None) -> dict:
    """A command line's ``--anchor`` as ``estimate``'s keyword: absent keeps ``estimate``'s
    default, "none" is ``anchor=None``."""
    return {} if flag is None else {"anchor": None if flag == "none" else flag}
