"""The correlated-Gaussian MI problem of Poole et al. 2019 and Song & Ermon 2020.

Poole et al., "On Variational Bounds of Mutual Information" (ICML 2019;
google-research/google-research ``vbmi/vbmi_demo.ipynb``); Song & Ermon, "Understanding the
Limitations of Variational Mutual Information Estimators" (ICLR 2020;
ermongroup/smile-mi-estimator ``utils.py``).

x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps, so every coordinate pair has correlation rho and
I(x; y) = -(d/2) log(1 - rho^2). The "cubic" variant maps y -> y^3 (invertible: same MI).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def mi_to_rho(dim: int, mi: float) -> float:
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def mi_staircase(levels: list[float], steps_per_level: int) -> np.ndarray:
    """True MI per step: each level held for ``steps_per_level`` steps (Poole's ``mi_schedule``
    with 20 000 iterations gives levels 2, 4, 6, 8, 10 for 4 000 steps each)."""
    return np.repeat(np.asarray(levels, dtype=np.float64), steps_per_level)


def sample_correlated_gaussian(
    batch_size: int,
    dim: int,
    rho: float,
    cubic: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    x, eps = torch.randn(2, batch_size, dim, generator=generator, dtype=dtype)
    y = rho * x + math.sqrt(1.0 - rho**2) * eps
    return x, (y**3 if cubic else y)


def log_density_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """K x K matrix of log p(y_j | x_i) - log p(y_j): the optimal critic (true PMI of every pair).

    ``y`` is in the Gaussian (non-cubed) space.
    """
    s2 = 1.0 - rho**2
    diff = y[None, :, :] - rho * x[:, None, :]  # (K, K, d): y_j - rho x_i
    dim = x.shape[1]
    cond = -(diff**2).sum(-1) / (2 * s2) - 0.5 * dim * math.log(s2)
    marg = -(y**2).sum(-1) / 2
    return cond - marg[None, :]
