"""KNIFE as a plug-in regularizer for any training method, and the KNIFE collapse diagnostic.

The training pattern is the official domain-adaptation loop (g-pichler/knife,
da_experiments/train.py): each step the estimator is first fitted on *detached* features with its
own Adam (lr 1e-3, betas (0.5, 0.999)), then the encoder's loss adds lambda * estimate computed on
the live features. Here both happen in one ``forward``; the estimator's parameters rest with
``requires_grad=False``, so the returned term sends gradient to the encoder only, and the main
optimizer (even one built from ``module.parameters()``) never sees a gradient for them.
Its fit uses ``torch.autograd.grad`` rather than ``.backward()``, so no DDP reducer hook fires.

Config (one dict, e.g. a YAML entry):
    {name: knife_entropy, on: embeddings|features, weight: 0.1, direction: maximize}
    {name: knife_mi, on: embeddings, nuisance: label|data, num_classes: 10, weight: 0.1,
     direction: minimize|maximize}
Every other key, and its default, is in ``infossl/configs/regularizers/<name>.yaml`` (type-checked
by ``infossl.config_schema.Regularizer``); a given entry overrides only what differs. ``on`` and
``nuisance`` are not used here: they tell the caller which tensors to pass (the embeddings or the
backbone features; the batch's labels, or the dataset's nuisance of ``data.nuisance``, e.g. the
colour tint of ``infossl/data/nuisance.py``; a dataset whose labels are domain indices gives a
domain-invariance term).

Standardization (``standardize``; default on for the entropy, off for MI): the inputs are centred
and scaled per dimension by their batch statistics before the estimator sees them, with the gradient
flowing through the statistics. Differential entropy is not scale-invariant, h(aX) = h(X) + d log a,
so maximizing the entropy of raw embeddings is unbounded: the encoder just scales them up (on digits
the embeddings reached inf within 7 steps). Standardized, the term is h(X) - sum_j log sigma_j, the
entropy of the dependence structure, bounded above by d/2 log(2 pi e) (a Gaussian with identity
correlation): a non-parametric counterpart of CorInfoMax's log-det. MI is invariant to per-dimension
affine maps, so ``knife_mi`` needs no standardization (it is off by default there, as in the
official code, whose fit on raw features converged faster in our tests).

Sign: the term is a loss to be *minimised*; ``maximize`` gives -weight * estimate.

DDP: pass gathered embeddings (``infossl.distributed.gather_cat``), as CorInfoMax does, so every
process fits its estimator on the same global batch and the estimators stay identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from infossl.config import regularizer_defaults
from infossl.losses.knife import KNIFE, MarginalKNIFE

NAMES = ("knife_entropy", "knife_mi")
AUTO_FULL_COVARIANCE_MAX_DIM = 64
# The conditional kernel's L is an output of a network, M d^2 numbers per *sample*: at d = 64,
# M = 128 that is a 524k-wide last layer and 0.3 G floats per batch of 640 (5 s a step on CPU).
AUTO_CONDITIONAL_FULL_COVARIANCE_MAX_DIM = 16
STANDARDIZE_EPS = 1e-4  # added to the batch variance: a collapsed dimension is not blown up


def _full_covariance(setting, dim: int, auto_max_dim: int = AUTO_FULL_COVARIANCE_MAX_DIM) -> bool:
    if setting in (None, "auto"):
        return dim <= auto_max_dim
    return bool(setting)


class KnifeRegularizer(nn.Module):
    """A KNIFE entropy or MI term to add to any loss; ``forward(x, nuisance=None)`` -> (term, logs).

    Pichler et al., ICML 2022, with the official domain-adaptation loop (g-pichler/knife,
    ``da_experiments/train.py``): each call first fits the estimator on ``x.detach()`` with its
    own Adam, then returns +-weight x the estimate on the live ``x`` (gradient to the encoder
    only). ``logs`` holds the detached estimate and the fit loss.

    Args:
        config: one regularizer entry, e.g. ``{name: knife_entropy, weight: 0.1}`` or
            ``{name: knife_mi, nuisance: label, num_classes: 10, weight: 0.1}``; the keys it
            leaves out take the defaults of ``configs/regularizers/<name>.yaml``.
        dim: width of ``x`` when the config has no ``dim``.
    """

    def __init__(self, config: Mapping, dim: int | None = None):
        super().__init__()
        name = config.get("name")
        if name not in NAMES:
            raise ValueError(f"KNIFE regularizer name must be one of {NAMES}, got {name!r}")
        cfg = {**regularizer_defaults(name), **config}
        self.name = name
        self.on = cfg["on"]
        self.weight = float(cfg["weight"])
        self.standardize = bool(cfg["standardize"])
        self.direction = cfg["direction"]
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {self.direction!r}")
        dim = dim if cfg["dim"] is None else cfg["dim"]
        if dim is None:
            raise ValueError("KnifeRegularizer needs the input width: config 'dim' or dim=")
        self.dim = int(dim)
        common = dict(
            full_covariance=_full_covariance(cfg["full_covariance"], self.dim),
            use_tanh=bool(cfg["use_tanh"]),
            init_std=float(cfg["init_std"]),
            scale_init_from_data=bool(cfg["scale_init_from_data"]),
        )
        modes = int(cfg["modes"])
        if self.name == "knife_entropy":
            self.estimator = MarginalKNIFE(self.dim, modes, **common)
            self.nuisance = self.num_classes = None
        else:
            self.nuisance = cfg["nuisance"]
            self.num_classes = cfg["num_classes"]
            nuisance_dim = self.num_classes if cfg["nuisance_dim"] is None else cfg["nuisance_dim"]
            if nuisance_dim is None:
                raise ValueError("knife_mi needs num_classes (integer nuisance) or nuisance_dim")
            conditional_modes = cfg["conditional_modes"]
            self.estimator = KNIFE(
                int(nuisance_dim),
                self.dim,
                modes,
                modes if conditional_modes is None else int(conditional_modes),
                hidden_dim=cfg["hidden_dim"],
                layer_norm=bool(cfg["layer_norm"]),
                conditional_full_covariance=_full_covariance(
                    cfg["conditional_full_covariance"],
                    self.dim,
                    AUTO_CONDITIONAL_FULL_COVARIANCE_MAX_DIM,
                ),
                **common,
            )
        self._trainable = [p for p in self.estimator.parameters() if p.requires_grad]
        for p in self._trainable:
            p.requires_grad_(False)
        self.fit_steps = int(cfg["fit_steps"])
        if self.fit_steps < 1:
            raise ValueError(f"fit_steps must be >= 1, got {self.fit_steps}")
        betas = tuple(float(b) for b in cfg["betas"])
        self.optimizer = torch.optim.Adam(self._trainable, lr=float(cfg["lr"]), betas=betas)

    # -- the estimator -------------------------------------------------------------------------
    def _marginal(self) -> MarginalKNIFE:
        return self.estimator if self.name == "knife_entropy" else self.estimator.marginal

    def _condition(self, nuisance: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.name == "knife_entropy":
            return None
        if nuisance is None:
            raise ValueError("knife_mi needs the nuisance (labels or domain ids) in forward")
        if nuisance.dtype in (torch.int64, torch.int32, torch.bool, torch.uint8):
            return F.one_hot(nuisance.long().view(n), int(self.num_classes)).float()
        return nuisance.float().view(n, -1)

    def _estimate(self, x: torch.Tensor, condition: torch.Tensor | None):
        if condition is None:
            h = self.estimator(x)
            return h, h, {}
        out = self.estimator(condition, x)  # I(nuisance; x) = h(x) - h(x | nuisance)
        extra = {
            "knife_marginal_entropy": out.marginal_entropy,
            "knife_conditional_entropy": out.conditional_entropy,
        }
        return out.mi, out.fit_loss, extra

    def fit_step(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """One step of the estimator's own Adam on ``x`` (already detached); returns its loss."""
        for p in self._trainable:
            p.requires_grad_(True)
        try:
            with torch.enable_grad():
                _, fit_loss, _ = self._estimate(x, condition)
                grads = torch.autograd.grad(fit_loss, self._trainable, allow_unused=True)
        finally:
            for p in self._trainable:
                p.requires_grad_(False)
        if torch.isfinite(fit_loss):  # a non-finite fit would poison Adam's moments: skip it
            for p, g in zip(self._trainable, grads, strict=True):
                p.grad = g
            self.optimizer.step()
        for p in self._trainable:
            p.grad = None
        return fit_loss.detach()

    def forward(self, x: torch.Tensor, nuisance: torch.Tensor | None = None):
        """Fit once on ``x.detach()``, then return (weighted signed estimate on ``x``, logs)."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if self.standardize:
                x = standardize(x)
            condition = self._condition(nuisance, x.shape[0])
            marginal = self._marginal()
            if not bool(marginal.initialized):
                marginal.initialize(x.detach())
            for _ in range(self.fit_steps):
                fit_loss = self.fit_step(x.detach(), condition)
            estimate, _, extra = self._estimate(x, condition)
        sign = -1.0 if self.direction == "maximize" else 1.0
        logs = {self.name: estimate.detach(), "knife_fit_loss": fit_loss}
        logs.update({k: v.detach() for k, v in extra.items()})
        return sign * self.weight * estimate, logs

    # -- checkpointing: the estimator's Adam state travels in the module's state_dict ------------
    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-dimension batch standardization, differentiable through the batch statistics."""
    mean = x.mean(0, keepdim=True)
    var = x.var(0, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + STANDARDIZE_EPS)


def knife_entropy_diagnostic(
    x: torch.Tensor,
    steps: int = 300,
    modes: int = 128,
    batch_size: int = 128,
    lr: float = 1e-2,
    full_covariance: bool | str = "auto",
    seed: int = 0,
) -> float:
    """Differential entropy (nats) of the rows of ``x`` by a fresh marginal KNIFE.

    Intended as ``diag/embeddings/knife_entropy``: a collapsing representation shows up as a
    falling entropy. Defaults follow the paper's Gaussian entropy experiment (Adam lr 1e-2,
    batch 128, M = 128). The rows are split in two halves: the mixture is placed on and fitted to
    the first, and the estimate is -mean log p on the second. Evaluating on the kernel samples
    themselves would reward kernels shrinking onto them (the estimate would run to -inf).
    Safe to call under ``torch.no_grad`` / ``inference_mode``; leaves the global RNG untouched.
    Returns NaN with fewer than 4 rows.
    """
    n, dim = x.shape
    if n < 4:
        return math.nan
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []),
    ):
        torch.manual_seed(seed)
        data = x.detach().clone().float()
        data = data[torch.randperm(n, device=data.device)]
        fit, held_out = data[: n // 2], data[n // 2 :]
        model = MarginalKNIFE(
            dim,
            min(modes, fit.shape[0]),
            full_covariance=_full_covariance(full_covariance, dim),
            scale_init_from_data=True,
        ).to(data.device)
        model.initialize(fit)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            batch = fit[torch.randint(fit.shape[0], (min(batch_size, fit.shape[0]),))]
            loss = model(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float(model(held_out))
