"""One held-out evaluation, early stopping on it, and the bootstrap of the chosen evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


class HeldOut:
    """Held-out evaluation of one model state.

    ``value(rows)`` is the estimate on those held-out rows (all rows when None); ``monitor`` is what
    early stopping maximises: the estimate itself for the bounds and FLO, the sum of the best
    held-out log-likelihoods of its terms for KNIFE (its estimate is a difference of fits, not a
    bound, so a larger value is not a better fit; ``infossl/mi/knife.py``).
    """

    def __init__(
        self, n: int, value_fn: Callable[[torch.Tensor | None], torch.Tensor], monitor=None
    ):
        self.n = n
        self._value_fn = value_fn
        self.estimate = float(value_fn(None))
        self.monitor = self.estimate if monitor is None else float(monitor)

    def value(self, rows: torch.Tensor | None = None) -> float:
        return float(self._value_fn(rows))


@dataclass
class EarlyStopping:
    """Keeps the evaluation with the largest monitored value; ``stop`` after ``patience``
    evaluations in a row without a new maximum (bmi's ``TrainingLog.early_stop`` with patience 1
    stops as soon as two evaluations pass without one). Non-finite values never become the best.
    """

    patience: int
    best_value: float = -math.inf
    best_step: int = -1
    best: object = None  # whatever the caller keeps of the best evaluation
    since_best: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)

    def update(self, step: int, value: float, keep: object = None) -> bool:
        """Record one evaluation; True when it is the new best."""
        self.history.append((step, value))
        if math.isfinite(value) and value > self.best_value:
            self.best_value, self.best_step, self.best, self.since_best = value, step, keep, 0
            return True
        self.since_best += 1
        return False

    @property
    def stop(self) -> bool:
        return self.since_best >= self.patience


def bootstrap(heldout, resamples: int, generator: torch.Generator, device) -> tuple[float, tuple]:
    """Standard error and 95 % percentile interval of the held-out estimate, resampling held-out
    rows with replacement ``resamples`` times (Efron & Tibshirani 1993, ch. 6 and 13)."""
    if resamples < 2:
        return math.nan, (math.nan, math.nan)
    rows = torch.randint(heldout.n, (resamples, heldout.n), generator=generator).to(device)
    values = torch.tensor([heldout.value(r) for r in rows], dtype=torch.float64)
    values = values[torch.isfinite(values)]
    if values.numel() < 2:
        return math.nan, (math.nan, math.nan)
    lo, hi = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(values.std()), (lo, hi)
