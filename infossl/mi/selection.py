"""Early stopping on the held-out estimate, and the bootstrap of the chosen held-out evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


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
