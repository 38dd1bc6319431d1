"""KNIFE for ``infossl.mi.estimate``: each entropy term kept at its own held-out best.

One density per entropy term, each selected on its own held-out likelihood, and a conditional
density anchored at the marginal.

KNIFE's MI (Pichler et al., ICML 2022; ``losses/knife.py``) is a difference of two cross-entropy
fits, I = h(Y) - h(Y | X) or h(X) + h(Y) - h(X, Y). Each fit is an upper bound on its entropy
that is tightest where its *own* held-out log-likelihood peaks, and those peaks come at different
steps: on 2 500 training pairs the conditional density memorizes the training pairs within a few
hundred steps while the marginal is still improving. Choosing one step for both (the joint
held-out likelihood) reports a badly overfit conditional beside a good marginal: -0.86 nats on a
5 x 5 Gaussian with I = 0.59. So every term keeps its held-out log-densities from the evaluation
where its own mean was largest, and the estimate combines those per-row values (which also makes
the bootstrap over held-out rows a plain resampling of them).

Anchored conditional (``conditional="anchored"``, the default here): p(y | x) is a KNIFE mixture
whose parameters are those of a mixture of its own plus outputs of a network of x whose last layer
starts at zero. At the start p(y | x) = p(y) for every x, so the estimate starts at exactly 0 and
grows only as far as the held-out pairs support it. Only the means and (``conditional_weights``,
on by default) the mixture weights move with x; the official conditional (``"official"``,
``ConditionalKNIFE``: every parameter a network of x, from a random start) also lets the
precisions depend on x, and a per-x precision is how a mixture memorizes a training pair
(a narrow component on each y_n), which is what overfits first.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from infossl.losses.knife import (
    KNIFE,
    JointKNIFE,
    MarginalKNIFE,
    as_float,
    conditioning_net,
    knife_log_density,
)
from infossl.mi.selection import HeldOut

CONDITIONALS = ("anchored", "official")


class AnchoredConditionalKNIFE(nn.Module):
    """p(y | x): the mixture ``base`` (a ``MarginalKNIFE``, trained with it) whose means and, with
    ``move_weights``, weight logits get an offset from a network of x; the precisions stay those of
    ``base`` (see the module docstring). The network's output layer starts at zero, so p(y | x)
    starts equal to ``base``."""

    def __init__(
        self,
        cond_dim: int,
        base: MarginalKNIFE,
        hidden_dim: int,
        *,
        layers: int = 1,
        move_weights: bool = True,
    ):
        super().__init__()
        self.base, self.move_weights = base, move_weights
        width = base.num_modes * base.dim + (base.num_modes if move_weights else 0)
        self.net = conditioning_net(cond_dim, hidden_dim, width, layers, False)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def log_density(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(y_n | x_n), (N, d) and (N, cond_dim) -> (N,)."""
        base = self.base
        y, x = as_float(y), as_float(x)
        if not bool(base.initialized):
            base.initialize(y)
        m, d = base.num_modes, base.dim
        offsets = self.net(x)
        means = base.means + offsets[:, : m * d].view(-1, m, d)
        logits = base.weight_logits + offsets[:, m * d :] if self.move_weights else None
        return knife_log_density(
            y,
            base.weight_logits if logits is None else logits,
            means,
            base.effective_log_scales(),
            base.tril,
        )


class KnifeModel(nn.Module):
    """KNIFE for :func:`infossl.mi.estimate`. ``joint=False``: I = h(Y) - h(Y | X) (official
    ``KNIFE``; the conditional anchored or official, see the module docstring); ``joint=True``:
    I = h(X) + h(Y) - h(X, Y) (the paper's Gaussian-MI variant, reported signed here, without the
    official ``abs``). Each entropy term is fitted on its own likelihood and selected at its own
    held-out maximum; the estimate is the held-out mean of the per-row log-density ratio."""

    def __init__(
        self,
        x_dim,
        y_dim,
        hidden_dim,
        joint=False,
        modes=32,
        conditional="anchored",
        conditional_weights=True,
        **knife_kwargs,
    ):
        super().__init__()
        self.joint = joint
        if conditional not in CONDITIONALS:
            raise ValueError(f"conditional must be one of {CONDITIONALS}, got {conditional!r}")
        if joint:
            self.knife = JointKNIFE(x_dim, y_dim, num_modes=modes, **knife_kwargs)
        elif conditional == "anchored":
            self.marginal = MarginalKNIFE(y_dim, modes, **knife_kwargs)
            # The conditional's own mixture starts as a copy of the marginal (means placed on the
            # same first batch), so the estimate is exactly 0 before the first step.
            self.conditional = AnchoredConditionalKNIFE(
                x_dim, copy.deepcopy(self.marginal), hidden_dim, move_weights=conditional_weights
            )
        else:
            # LayerNorm of a 1- or 2-wide condition is a constant or a sign (knife.py,
            # conditioning_net): off for such x unless asked for.
            knife_kwargs.setdefault("layer_norm", x_dim > 2)
            # The official nets are as wide as the modelled variable (2 units for a 2-D y): too
            # narrow to move 32 means with x; they get the critics' hidden width instead.
            knife_kwargs.setdefault("hidden_dim", hidden_dim)
            official = KNIFE(x_dim, y_dim, modes, modes, **knife_kwargs)
            self.marginal, self.conditional = official.marginal, official.conditional
        self._best: dict[str, tuple[float, torch.Tensor]] = {}

    def _terms(self, x, y) -> dict[str, torch.Tensor]:
        """Per-row log-densities of each fitted term (the estimate is a signed sum of them)."""
        if self.joint:
            k = self.knife
            return {
                "x": k.kernel_x.log_density(x),
                "y": k.kernel_y.log_density(y),
                "xy": k.kernel_xy.log_density(torch.cat([x, y], dim=1)),
            }
        return {"y": self.marginal.log_density(y), "y|x": self.conditional.log_density(y, x)}

    @staticmethod
    def _ratio(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        if "xy" in terms:
            return terms["xy"] - terms["x"] - terms["y"]
        return terms["y|x"] - terms["y"]

    def forward(self, x, y):
        terms = self._terms(x, y)
        return -sum(t.mean() for t in terms.values()), self._ratio(terms).mean().detach()

    @torch.no_grad()
    def heldout(self, x, y) -> HeldOut:
        """Keeps, per term, the held-out log-densities of its best evaluation so far (the held-out
        set is the same at every call); ``monitor`` is the sum of the terms' best held-out means,
        which grows whenever any term improves, so early stopping waits for all of them."""
        for name, values in self._terms(x, y).items():
            mean = float(values.mean())
            if torch.isfinite(values).all() and mean > self._best.get(name, (-float("inf"),))[0]:
                self._best[name] = (mean, values.clone())
        if len(self._best) < (3 if self.joint else 2):  # some term never finite yet
            return HeldOut(x.shape[0], lambda rows: torch.tensor(float("nan")), float("nan"))
        ratio = self._ratio({k: v for k, (_, v) in self._best.items()})
        monitor = sum(mean for mean, _ in self._best.values())

        def value(rows):
            return (ratio if rows is None else ratio[rows]).mean()

        return HeldOut(x.shape[0], value, monitor=monitor)
