"""``estimate(x, y)``: I(X; Y) in nats from N paired samples, with a held-out split.

Protocol (the one bmi's neural estimators use, Czyż et al. 2023, ``bmi/estimators/neural``):
standardize each column, split the N pairs at random into a training and a held-out part, train
the critic (or the KNIFE densities) on mini-batches of the training part, evaluate on the whole
held-out part every ``eval_every`` steps, stop when ``patience`` evaluations pass without a new
best, and report the best held-out evaluation with a bootstrap over the held-out rows (KNIFE:
each entropy term at its own best evaluation, ``infossl/mi/knife.py``). Our addition: the critic
starts from the Gaussian fitted to the training part (``anchor="gaussian"``,
``infossl/mi/anchor.py``), and that untrained state is evaluated too, at step 0.

Why held-out and early stopping: a critic trained for thousands of steps on a finite sample
memorizes it; its bound on the *training* pairs keeps rising while the held-out bound falls, far
below zero (InfoNCE at -2 nats on a 1-nat task after 5 000 steps). The held-out maximum is a
valid lower bound evaluated on data the critic never saw, up to the small optimism of choosing
the best of a few dozen evaluations.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from infossl.mi.anchor import GaussianCritic
from infossl.mi.inputs import MIInputError, check_pairs, preprocess_columns
from infossl.mi.models import ESTIMATORS, build_model
from infossl.mi.selection import EarlyStopping, bootstrap

# KNIFE fits mixture means and scales directly; at the critics' 5e-4 it needs several times the
# steps.
DEFAULT_LR = {"critic": 5e-4, "knife": 3e-3}
# Weight decay keeps a critic smooth on the few thousand training pairs a user has, so it reaches
# a tighter held-out bound before it memorizes them: InfoNCE's mean absolute error over bmi's 15
# tasks fell from 0.182 to 0.152 nats at 2 (0.188 at 5, 0.420 at 10), measured on samples drawn
# with a seed the benchmark's table does not use (seed 3; BENCHMARKS.md). KNIFE's parameters are
# mixture means and scales, which a decay toward 0 would bias: none.
DEFAULT_WEIGHT_DECAY = {"critic": 2.0, "knife": 0.0}
# FLO's defaults here: |u| and |g| below 10 nats, so exp(-u + contrast) <= e^30 stays finite in
# float32 and pointwise MI up to 10 nats is still representable.
FLO_BOUNDS = {"u_bound": 10.0, "score_bound": 10.0}
ANCHORS = ("gaussian", None)
# The constant that makes the Gaussian log ratio the bound's optimal critic: NWJ's is 1 + log ratio
# (Nguyen et al. 2010); the others are shift-invariant or optimal at the log ratio itself.
ANCHOR_OFFSET = {"nwj": 1.0}


@dataclass
class MIEstimate:
    """Result of :func:`estimate`; every number in nats.

    Attributes:
        estimate: the held-out estimate at ``best_step``.
        stderr: bootstrap standard error over the held-out rows.
        ci: 95 % bootstrap percentile interval.
        best_step: training step of the reported evaluation.
        curve: ``step``, ``heldout``, ``train``: one entry per evaluation.
        estimator: the estimator's name.
        settings: every setting used, with ``n_train`` and ``n_heldout`` (anchored: also
            ``anchor_rank`` and ``anchor_train_mi``, the fitted Gaussian's rank and MI).
        stopped_early: patience ran out before ``max_steps``.
        skipped_steps: updates skipped because the training loss was not finite.
        seconds: wall time.
    """

    estimate: float  # held-out estimate at best_step
    stderr: float  # bootstrap standard error over held-out rows
    ci: tuple[float, float]  # 95 % bootstrap percentile interval
    best_step: int  # training step of the reported evaluation
    curve: dict = field(repr=False)  # step, heldout, train: one entry per evaluation
    estimator: str = ""
    settings: dict = field(default_factory=dict, repr=False)
    stopped_early: bool = False  # patience ran out before max_steps
    skipped_steps: int = 0  # updates skipped because the training loss was not finite
    seconds: float = 0.0

    def __str__(self) -> str:
        lo, hi = self.ci
        return (
            f"I(X;Y) = {self.estimate:.4f} +- {self.stderr:.4f} nats (95% CI [{lo:.4f}, {hi:.4f}];"
            f" {self.estimator}, best held-out step {self.best_step}"
            f" of {self.curve['step'][-1] if self.curve['step'] else 0},"
            f" {self.settings.get('n_train')} train / {self.settings.get('n_heldout')} held-out)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise MIInputError(f"bad device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MIInputError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


def _train_step(model, opt, grad_clip, x, y, train_values: list) -> bool:
    """One AdamW step on a training batch; True when it was skipped (non-finite loss)."""
    model.train()
    loss, mi = model(x, y)
    if not torch.isfinite(loss):
        return True
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    train_values.append(float(mi))
    return False


def estimate(
    x,
    y,
    estimator: str = "smile",
    *,
    critic: str = "separable",
    anchor: str | None = "gaussian",
    hidden_dim: int = 128,
    layers: int = 2,
    embed_dim: int = 32,
    batch_size: int = 256,
    lr: float | None = None,
    weight_decay: float | None = None,
    max_steps: int = 5000,
    eval_every: int = 100,
    patience: int = 10,
    grad_clip: float | None = 10.0,
    train_fraction: float = 0.5,
    preprocess: str = "standardize",
    bootstrap_resamples: int = 200,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **estimator_options,
) -> MIEstimate:
    """Estimate I(X; Y) in nats from paired samples ``x`` (N, dx) and ``y`` (N, dy).

    Args:
        estimator: one of ``infossl.mi.ESTIMATORS``: the bounds of ``losses/mi_bounds.py``
            (infonce, dv, mine, nwj, tuba, js, smile), flo, knife (h(Y) - h(Y|X)), knife_joint.
        critic: "separable" (g(x)^T h(y)) or "concat" (an MLP on [x; y], N_test^2 evaluations per
            held-out pass) with ``hidden_dim`` units in ``layers`` hidden layers (``embed_dim``
            for separable). Ignored by KNIFE.
        anchor: "gaussian": the critic (FLO: its g and u) starts from the log density ratio of
            the reduced-rank Gaussian fitted to the training part, the network learning what it
            misses, and the untrained state is the first evaluation (``infossl/mi/anchor.py``);
            None: the network alone. Ignored by KNIFE.
        batch_size, lr, max_steps: AdamW on mini-batches of the training part; ``lr=None`` is
            ``DEFAULT_LR``: 5e-4 for critics (the staircase's), 3e-3 for KNIFE's densities.
        weight_decay: AdamW's decoupled weight decay (Loshchilov & Hutter, ICLR 2019); each step
            shrinks every weight by ``lr * weight_decay``; 0 is plain Adam. ``None`` is
            ``DEFAULT_WEIGHT_DECAY``: 2 for critics, 0 for KNIFE's densities.
        eval_every, patience: evaluate on the held-out part every ``eval_every`` steps; stop after
            ``patience`` evaluations without a new best.
        grad_clip: global gradient-norm clip (None: off).
        train_fraction: share of the N pairs used for training; the rest is held out.
        preprocess: "standardize" (zero mean, unit variance per column), "copula" (per-column
            ranks to normal scores: MI-preserving, robust to heavy tails) or "none".
        bootstrap_resamples: resamples of the held-out rows for ``stderr`` and ``ci``.
        device: where to train ("cpu", "cuda", ...).
        progress: show a tqdm progress bar.
        **estimator_options: passed to the estimator: ``clip`` (smile), ``momentum`` (mine),
            ``reg_weight``/``reg_target``/``reg_distance`` (ReMINE regularizer, critic bounds and
            flo), ``u_bound`` (flo), ``modes``, ``conditional`` ("anchored" or "official"),
            ``conditional_weights`` and KNIFE's flags (knife, knife_joint; ``infossl/mi/knife.py``).

    Returns:
        :class:`MIEstimate` (estimate, stderr, ci, best_step, curve, estimator, settings).

    Raises:
        MIInputError: NaN/inf values, mismatched N, too few samples for the batch, bad names.

    Example::

        >>> from infossl.mi import estimate
        >>> res = estimate(x, y, "smile")
        >>> print(res.estimate, res.stderr)
    """
    t0 = time.time()
    if estimator not in ESTIMATORS:
        raise MIInputError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if anchor not in ANCHORS:
        raise MIInputError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    x, y, n_train = check_pairs(x, y, batch_size, train_fraction, preprocess)
    x, y = preprocess_columns(x, preprocess, "x"), preprocess_columns(y, preprocess, "y")
    device = _device(device)
    kind = "knife" if estimator.startswith("knife") else "critic"
    lr = DEFAULT_LR[kind] if lr is None else lr
    weight_decay = DEFAULT_WEIGHT_DECAY[kind] if weight_decay is None else weight_decay
    if estimator == "flo":  # see models.FLOModel._bounded: finite held-out values
        estimator_options = {**FLO_BOUNDS, **estimator_options}
    settings = dict(
        critic=critic,
        anchor=anchor if kind == "critic" else None,  # KNIFE has no critic to anchor
        hidden_dim=hidden_dim,
        layers=layers,
        embed_dim=embed_dim,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        max_steps=max_steps,
        eval_every=eval_every,
        patience=patience,
        grad_clip=grad_clip,
        train_fraction=train_fraction,
        preprocess=preprocess,
        bootstrap_resamples=bootstrap_resamples,
        seed=seed,
        device=str(device),
        n=x.shape[0],
        n_train=n_train,
        n_heldout=x.shape[0] - n_train,
        **estimator_options,
    )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=gen)
    xt = torch.as_tensor(x, dtype=torch.float32)[perm].to(device)
    yt = torch.as_tensor(y, dtype=torch.float32)[perm].to(device)
    x_train, y_train, x_held, y_held = xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:]
    anchor_critic = None
    if settings["anchor"] == "gaussian":
        anchor_critic = GaussianCritic(x_train, y_train, offset=ANCHOR_OFFSET.get(estimator, 0.0))
        # what the anchor is: its rank and the fitted Gaussian's own MI on the training part
        settings.update(anchor_rank=anchor_critic.rank, anchor_train_mi=anchor_critic.mi)
    try:
        model = build_model(
            estimator,
            x.shape[1],
            y.shape[1],
            critic,
            hidden_dim,
            layers,
            embed_dim,
            anchor_critic,
            **estimator_options,
        ).to(device)
        model(x_train[:batch_size], y_train[:batch_size])  # options reach the bound only here
    except TypeError as err:
        raise MIInputError(f"{estimator}: {err}") from None
    except ValueError as err:
        raise MIInputError(str(err)) from None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    stopper = EarlyStopping(patience)
    curve = {"step": [], "heldout": [], "train": []}
    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps, desc=f"mi/{estimator}", disable=not progress, mininterval=1)
    order, pos, train_values, skipped, step = torch.randperm(n_train, generator=gen), 0, [], 0, 0
    # An anchored critic is evaluated before training too: the fitted Gaussian's own bound is a
    # candidate, so the estimate is never worse than where training started.
    for step in range(0 if anchor_critic is not None else 1, max_steps + 1):
        if step > 0:
            if pos + batch_size > n_train:  # fresh shuffle each epoch: no pair twice per epoch
                order, pos = torch.randperm(n_train, generator=gen), 0
            idx = order[pos : pos + batch_size].to(device)
            pos += batch_size
            if _train_step(model, opt, grad_clip, x_train[idx], y_train[idx], train_values):
                skipped += 1
            bar.update(1)
        if step % eval_every and step != max_steps:
            continue
        model.eval()
        held = model.heldout(x_held, y_held)
        stopper.update(step, held.monitor, held)
        curve["step"].append(step)
        curve["heldout"].append(held.estimate)
        curve["train"].append(float(np.mean(train_values)) if train_values else math.nan)
        train_values = []
        bar.set_postfix(heldout=f"{held.estimate:.3f}", best=f"{stopper.best_value:.3f}")
        if stopper.stop:
            break
    bar.close()
    best = stopper.best
    if best is None:  # every evaluation was non-finite: say so rather than return a number
        return MIEstimate(
            math.nan,
            math.nan,
            (math.nan, math.nan),
            -1,
            curve,
            estimator,
            settings,
            stopper.stop,
            skipped,
            time.time() - t0,
        )
    stderr, ci = bootstrap(best, bootstrap_resamples, gen, device)
    return MIEstimate(
        best.estimate,
        stderr,
        ci,
        stopper.best_step,
        curve,
        estimator,
        settings,
        stopper.stop,
        skipped,
        time.time() - t0,
    )
