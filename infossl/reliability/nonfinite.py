"""NaN / Inf losses: stop with a message naming the step, every loss term and the last good
checkpoint (default), or skip up to ``training.skip_nonfinite`` batches with a warning each.

Cost: one host-device synchronisation per step (``bool(torch.isfinite(loss))``), the price of
deciding before the optimizer step; skipped batches return None from ``training_step``, which
makes Lightning skip backward and the optimizer step for them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_lightning.utilities import rank_zero_warn


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf more often than allowed."""


def _describe(terms: dict) -> str:
    parts = []
    for name, value in terms.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        if isinstance(value, float):
            parts.append(f"{name}={value:.6g}")
    return ", ".join(parts)


class NonFiniteGuard:
    def __init__(
        self,
        skip_limit: int,
        last_checkpoint: Callable[[], str | None] = lambda: None,
        inject_at_steps: tuple[int, ...] = (),
    ):
        self.skip_limit = skip_limit
        self.last_checkpoint = last_checkpoint
        self.inject_at_steps = set(inject_at_steps)
        self.skipped = 0

    def maybe_inject(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """Fault injection for tests and drills (config training.inject_nan_at_steps)."""
        return loss * float("nan") if step in self.inject_at_steps else loss

    def check(self, loss: torch.Tensor, terms: dict, step: int) -> bool:
        """True when this batch must be skipped; raises when the run must stop."""
        if bool(torch.isfinite(loss.detach()).all()):
            return False
        detail = _describe(terms)
        if self.skipped < self.skip_limit:
            self.skipped += 1
            rank_zero_warn(
                f"non-finite loss at step {step} ({detail}); skipping this batch "
                f"({self.skipped} of at most {self.skip_limit})"
            )
            return True
        last = self.last_checkpoint() or "none yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {step} ({detail}); stopped after {self.skipped} skipped "
            f"batch(es) (training.skip_nonfinite={self.skip_limit}); last good checkpoint: {last}"
        )
