"""The guard against NaN / Inf losses: stop the run with a message, or skip the batch.

The message names the step, every loss term and the last good checkpoint (the default); or up
to ``training.skip_nonfinite`` batches are skipped with a warning each.

Stopping (``skip_nonfinite: 0``, the default) costs no host-device synchronisation per step:
``record`` keeps, on the device, the first non-finite step and its term values (a few scalar
``torch.where``), and ``raise_if_recorded`` reads them (one scalar copy) only where the host
waits anyway or must know: at logging steps, at the end of an epoch, before any checkpoint is
written (so a checkpoint never holds the weights of a non-finite update) and at the end of
training. The run stops up to ``log_every_n_steps`` steps after the bad one; the message names
the bad step. Wiring (method base)::

    self.nonfinite_guard.record(loss, terms, self.global_step)     # every step, no sync
    self.nonfinite_guard.raise_if_recorded()                       # logging steps, checkpoints

Skipping (``skip_nonfinite > 0``) must decide *before* backward, so ``check`` syncs once per
step (``bool(torch.isfinite(loss))``: one scalar copied to the host once the forward pass has
run); the term values are copied only on a non-finite step::

    if self.nonfinite_guard.check(loss, terms, self.global_step):
        return None  # Lightning then skips backward; no parameter or optimizer state changes

A skipped batch still counts in ``trainer.global_step`` and advances a step-interval LR
schedule: Lightning calls ``optimizer.step`` with a closure that returned None, and torch
optimizers skip parameters without a gradient (tests/reliability/test_nonfinite.py).
Deciding without a sync would need the decision inside the optimizer (as AMP's GradScaler does
with ``found_inf``), which still syncs in ``scaler.step``. Skipping is for one process only:
under DDP a process that skipped backward alone would leave its peers waiting in the gradient
all-reduce, and agreeing would add a collective to every step, so ``infossl.config.validate``
refuses ``skip_nonfinite > 0`` with more than one process. Stopping works under DDP: the
process that raises makes Lightning's launcher end its peers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_lightning.utilities import rank_zero_warn

from infossl.errors import Fault


class NonFiniteLossError(Fault):
    """The loss became NaN or Inf more often than allowed."""


def describe_terms(terms: dict) -> str:
    """``name=value`` for every term: scalars as numbers, larger tensors by their non-finite
    count, anything else by its repr."""
    parts = []
    for name, value in terms.items():
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.numel() == 1:
                parts.append(f"{name}={float(value):.6g}")
            else:
                bad = int((~torch.isfinite(value)).sum())
                parts.append(f"{name}=<{tuple(value.shape)} tensor, {bad} non-finite>")
        elif isinstance(value, float | int):
            parts.append(f"{name}={value:.6g}")
        else:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


class NonFiniteGuard:
    """Skip or stop on a NaN/Inf loss, naming the step and the terms that went non-finite.

    ``check(loss, terms, step)`` -> True when the batch must be skipped (one host sync per step);
    it raises ``NonFiniteLossError`` once more than ``skip_limit`` batches were non-finite. With
    ``skip_limit`` 0, ``record`` keeps a device-side flag instead (no sync) and
    ``raise_if_recorded`` raises at the next point the host waits anyway.

    Args:
        skip_limit: non-finite batches to skip before stopping (0: stop at the first).
        last_checkpoint: returns the newest checkpoint's path, for the error message.
        inject_at_steps: steps whose loss is replaced by NaN (fault-injection tests).
    """

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
        self._first_bad_step: torch.Tensor | None = None  # -1 while every loss was finite
        self._bad_terms: dict[str, torch.Tensor] = {}

    @property
    def syncs_every_step(self) -> bool:
        """Skipping needs ``check`` (one sync per step); stopping uses ``record``."""
        return self.skip_limit > 0

    def maybe_inject(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """Fault injection for tests and drills (config training.inject_nan_at_steps)."""
        return loss * float("nan") if step in self.inject_at_steps else loss

    def check(self, loss: torch.Tensor, terms: dict, step: int) -> bool:
        """True when this batch must be skipped; raises when the run must stop."""
        nonfinite = not bool(torch.isfinite(loss.detach()).all())  # the one sync per step
        if not nonfinite:
            return False
        named = any(k == "loss" or k.endswith("/loss") for k in terms)
        detail = describe_terms(terms if named else {"loss": loss, **terms})
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

    def record(self, loss: torch.Tensor, terms: dict, step: int) -> None:
        """Remember the first non-finite step and its tensor terms, on the device, no sync."""
        loss = loss.detach()
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        new = (~torch.isfinite(loss).all()) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(new, step, self._first_bad_step)
        for name, value in {"loss": loss, **terms}.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
                kept = self._bad_terms.get(name)
                if kept is None or kept.shape != value.shape:
                    kept = torch.zeros_like(value)
                self._bad_terms[name] = torch.where(new, value, kept)

    def raise_if_recorded(self) -> None:
        """Raise ``NonFiniteLossError`` if ``record`` saw a non-finite loss (one scalar sync)."""
        if self._first_bad_step is None:
            return
        step = int(self._first_bad_step)
        if step < 0:
            return
        terms = dict(self._bad_terms)
        if any(k.endswith("/loss") for k in terms):
            terms.pop("loss")  # the method's own name for it is in the terms
        last = self.last_checkpoint() or "none yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {step} ({describe_terms(terms)}); stopped "
            f"(training.skip_nonfinite={self.skip_limit}); last good checkpoint: {last}"
        )
