"""Critics T(x, y) that score all K x K pairs of a batch: ``scores[i, j] = T(x_i, y_j)``.

The diagonal holds the joint pairs. Poole et al.'s notebook transposes one of its two critics
(``SeparableCritic`` returns f(x_j, y_i)); here every critic uses the same (row = x) order, so a
per-row baseline (TUBA) is always a function of x.

``layers`` counts hidden layers, as in Poole's TF ``mlp`` (``layers=2`` -> two 256-unit ReLU
layers). SMILE's PyTorch ``mlp`` builds one more hidden layer for the same argument. Weights use
PyTorch's default init (SMILE's PyTorch code), not TF's ``random_normal``.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of ``hidden_dim`` units, then a linear output."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden_dim), nn.ReLU()]
        d = hidden_dim
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def all_pairs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, dx), (m, dy) -> (n, m, dx + dy) with entry [i, j] = [x_i; y_j]."""
    n, m = x.shape[0], y.shape[0]
    return torch.cat([x[:, None].expand(n, m, -1), y[None].expand(n, m, -1)], dim=-1)


class SeparableCritic(nn.Module):
    """Separable critic T(x, y) = g(x)^T h(y) with two MLPs; ``forward(x, y)`` -> (K, K) scores.

    Poole et al., "On Variational Bounds of Mutual Information", ICML 2019
    (google-research/google-research, ``vbmi/vbmi_demo.ipynb``: ``SeparableCritic``), with rows
    indexed by x here.

    Args:
        x_dim: width of x.
        y_dim: width of y.
        hidden_dim: units per hidden layer of g and h.
        embed_dim: width of g(x) and h(y) (32 in Poole's benchmark).
        layers: hidden layers of each MLP.
    """

    def __init__(self, x_dim, y_dim, hidden_dim=256, embed_dim=32, layers=2):
        super().__init__()
        self.g = mlp(x_dim, hidden_dim, embed_dim, layers)
        self.h = mlp(y_dim, hidden_dim, embed_dim, layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.h(y).T


class ConcatCritic(nn.Module):
    """Concat (joint) critic T(x, y) = MLP([x; y]) on all K^2 pairs; ``forward(x, y)`` -> (K, K).

    Poole et al. 2019 (``vbmi/vbmi_demo.ipynb``: ``ConcatCritic``), also ReMINE's critic
    (Siyeong-Lee/Deconstructing-MINE).

    Args:
        x_dim: width of x.
        y_dim: width of y.
        hidden_dim: units per hidden layer.
        layers: hidden layers.
        out_dim: outputs of the MLP (1 for a score).
    """

    def __init__(self, x_dim, y_dim, hidden_dim=256, layers=2, out_dim=1):
        super().__init__()
        self.f = mlp(x_dim + y_dim, hidden_dim, out_dim, layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.f(all_pairs(x, y)).squeeze(-1)


class FLOSharedCritic(nn.Module):
    """FLO's shared critic: one MLP on [x; y] with two heads, ``forward(x, y)`` -> ``(g, u)``.

    Guo et al., NeurIPS 2022 (arXiv 2107.01131, Sec. 2, Fig. 4; qingguo666/FLO). g is the K x K
    score matrix over all pairs, u the u head on the K joint pairs (the diagonal), which is all
    ``infossl.losses.flo.flo`` needs.

    Args:
        x_dim: width of x.
        y_dim: width of y.
        hidden_dim: units per hidden layer.
        layers: hidden layers.
    """

    def __init__(self, x_dim, y_dim, hidden_dim=256, layers=2):
        super().__init__()
        self.f = mlp(x_dim + y_dim, hidden_dim, 2, layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.f(all_pairs(x, y))  # (K, K, 2)
        g = out[..., 0]
        u = out[..., 1].diagonal()
        return g, u

    def u(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """u(x_i, y_i) for aligned pairs only (cheap: K evaluations)."""
        return self.f(torch.cat([x, y], dim=-1))[..., 1]
