"""SIGTERM / SIGUSR1: save ``last.ckpt`` at the next step boundary and stop cleanly.

Lightning 2.x notes SIGTERM (``trainer.received_sigterm``) and raises ``SIGTERMException`` at the
next step, but saves nothing unless SLURM auto-requeue is on; SIGUSR1 (SLURM's warning signal)
is handled only under SLURM with auto-requeue (Lightning then saves an hpc checkpoint in the run
directory and requeues; it is restored automatically). This callback covers the rest: after the
batch in flight finishes it writes ``checkpoints/last.ckpt`` (atomically) and stops, so
``--resume auto`` continues from exactly that step.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info


class PreemptionCheckpoint(pl.Callback):
    def __init__(self, last_path: Path):
        self.last_path = Path(last_path)
        self.requested_by: str | None = None
        self.saved_step: int | None = None

    def setup(self, trainer, pl_module, stage):
        # SIGTERM is Lightning's (it sets trainer.received_sigterm); SIGUSR1 we catch ourselves
        # unless SLURM auto-requeue already owns it.
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.signal(signal.SIGUSR1, self._on_sigusr1)

    def _on_sigusr1(self, signum, frame):
        self.requested_by = "SIGUSR1"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if getattr(trainer, "received_sigterm", False):
            self.requested_by = self.requested_by or "SIGTERM"
        if self.saved_step is not None:
            return
        requested = self.requested_by is not None
        if trainer.world_size > 1:
            # Every process must save at the same step (saving has a barrier); signals reach
            # processes at slightly different times, so the decision is taken together.
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        self.requested_by = self.requested_by or "signal on another process"
        trainer.save_checkpoint(self.last_path)
        self.saved_step = trainer.global_step
        trainer.should_stop = True
        rank_zero_info(
            f"{self.requested_by} received: saved {self.last_path} at step "
            f"{trainer.global_step}; continue with --resume auto"
        )
