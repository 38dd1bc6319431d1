"""SIGTERM / SIGUSR1: save ``last.ckpt`` at the next training-step boundary and stop cleanly.

What pytorch-lightning 2.6 does by itself (trainer/connectors/signal_connector.py, loops/):
- SIGTERM: its handler sets ``trainer.received_sigterm``, forwards the signal to the DDP child
  processes and, under DDP, calls ``dist.broadcast`` *inside the signal handler*; the loops then
  raise ``SIGTERMException`` (a ``SystemExit``) at the end of the step, at the start of the
  next one (after a per-step broadcast of rank 0's flag) or mid-validation. It saves nothing.
  A collective issued from a signal handler can pair with an unrelated collective of a peer,
  and rank 0 can raise one step before the others (Lightning issue #20806).
- SIGUSR1: handled only under SLURM with ``auto_requeue`` (the default there): Lightning saves
  ``hpc_ckpt_N.ckpt`` in ``default_root_dir``, requeues the job and restores it on restart.

- Under DDP, the training loop also broadcasts rank 0's ``received_sigterm`` at the start of
  *every* step (``_TrainingEpochLoop._broadcast_sigterm_tensor``: a broadcast and a ``.item()``,
  i.e. a collective and a host sync per step).

So this callback takes both signals over once training starts (``on_train_start`` runs after
Lightning installed its handlers; SIGUSR1 is left to Lightning when SLURM auto-requeue owns
it): the handler only sets a flag. One process checks its flag after every step (no
collective). Under DDP the processes agree only at the end of every ``every_n_steps``-th batch
(the run's ``trainer.log_every_n_steps``): one all-reduce of a bool, any process's signal
counts; and Lightning's per-step broadcast is switched off while this callback owns SIGTERM
(Lightning's handler, the only thing that sets ``received_sigterm``, is not installed then,
so the broadcast could only ever send 0).
All processes save ``last_path`` together (atomically, through the checkpoint I/O plugin) and
all raise ``SIGTERMException`` at that same point, so no process waits in a collective for a
peer that has left. A signal is acted on at most ``every_n_steps`` steps later (or after the
epoch's end, whose last.ckpt covers it). ``SystemExit`` semantics: if nobody catches it the
process exits with status 0. Cost per step, 2 CPU processes (gloo): BENCHMARKS.md
"Preemption check under DDP" (benchmarks/preemption_sync.py).

What resuming from that checkpoint guarantees (Lightning restores the loops' progress:
``RESTARTED_ON_TRAIN_BATCH_END``): the same epoch, batch index and global step, so the run ends
at exactly the global step of an uninterrupted run, with the optimizer, scheduler and (through
``infossl.callbacks.RNGStateCheckpoint``) RNG states of the save point. It does *not* replay
the interrupted epoch's sample order: a plain ``DataLoader`` is not resumable, so the rest of
that epoch is ``len(loader) - batches_done`` batches drawn from a fresh iterator (a new random
permutation with ``RandomSampler``; from the start of the same permutation with DDP's
``DistributedSampler``, which is seeded by epoch). Within the interrupted epoch some samples
are therefore seen twice and others not at all (tests/reliability/test_preemption.py measures
it); from the next epoch on, the order is the usual one for that epoch. Exact replay needs a
stateful loader (``torchdata.stateful_dataloader.StatefulDataLoader``, which Lightning saves
and restores through ``state_dict``).

A signal that arrives during validation is acted on at the next training batch; if the job is
killed before then, ``--resume auto`` uses the ``last.ckpt`` of the last finished epoch.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from infossl.lightning_compat import (
    cluster_environment,
    replace_sigterm_broadcast,
    restore_sigterm_broadcast,
)


def _no_broadcast() -> None:
    """Stands in for Lightning's per-step SIGTERM broadcast while this callback owns SIGTERM."""


def _slurm_requeue_owns_sigusr1(trainer: pl.Trainer) -> bool:
    environment = cluster_environment(trainer)
    return isinstance(environment, SLURMEnvironment) and environment.auto_requeue


class PreemptionCheckpoint(pl.Callback):
    """Save ``last_path`` and stop, on every process at the same step, after SIGTERM/SIGUSR1.

    Args:
        last_path: the checkpoint to write (``checkpoints/last.ckpt``).
        every_n_steps: how often the processes agree on whether a signal arrived.
    """

    def __init__(self, last_path: str | Path, every_n_steps: int = 1):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.last_path = Path(last_path)
        self.every_n_steps = every_n_steps
        self.requested_by: str | None = None  # the signal's name, once one arrived
        self.saved_step: int | None = None  # global step of the checkpoint written on request
        self._previous: dict[int, object] = {}
        self._loop = None  # the epoch loop whose per-step SIGTERM broadcast is switched off

    # -- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        # Only a flag: no I/O, no collectives, nothing that could run in the middle of a step.
        self.requested_by = self.requested_by or signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        signals = [signal.SIGTERM]
        if not _slurm_requeue_owns_sigusr1(trainer):
            signals.append(signal.SIGUSR1)
        for signum in signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        loop = trainer.fit_loop.epoch_loop
        if trainer.world_size > 1 and replace_sigterm_broadcast(loop, _no_broadcast):
            self._loop = loop  # undone below

    def _restore_handlers(self) -> None:
        # Runs before Lightning's own teardown restores the handlers it found, so the process
        # ends up with exactly the handlers it had before fit.
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._on_signal and handler is not None:
                signal.signal(signum, handler)
        self._previous = {}
        if self._loop is not None:
            restore_sigterm_broadcast(self._loop)
            self._loop = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_handlers()

    # -- the step boundary ---------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.saved_step is not None:
            return
        requested = self.requested_by is not None
        if trainer.world_size > 1:
            if (batch_idx + 1) % self.every_n_steps:
                return
            # Signals reach processes at different moments; saving has a barrier, so the
            # decision is taken together: any process's request stops all of them.
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        self.requested_by = self.requested_by or "a signal on another process"
        # The full training state; said explicitly, or Lightning logs "`weights_only` was not
        # set, defaulting to `False`" at every save (about saving, easily misread as loading).
        trainer.save_checkpoint(self.last_path, weights_only=False)
        self.saved_step = trainer.global_step
        trainer.should_stop = True
        rank_zero_info(
            f"{self.requested_by} received: saved {self.last_path} at step "
            f"{trainer.global_step}; continue with --resume auto"
        )
        # Leave now, on every process at this same point: running on to the epoch end would
        # write a mid-epoch file under an end-of-epoch name and run validation.
        raise SIGTERMException()
