"""Every private pytorch-lightning attribute InfoSSL touches, in one place.

Each function says why the public API does not suffice. They are written against
pytorch-lightning 2.x (``loops/training_epoch_loop.py``,
``trainer/connectors/logger_connector/logger_connector.py``,
``trainer/connectors/signal_connector.py``): a Lightning upgrade that renames one needs a change
here only.
"""

from __future__ import annotations

from pytorch_lightning.loops.training_epoch_loop import _TrainingEpochLoop

# The per-step DDP broadcast of rank 0's SIGTERM flag (a collective and a host sync per step).
SIGTERM_BROADCAST = "_broadcast_sigterm_tensor"


def attached_trainer(module):
    """The module's Trainer, or None when it is used without one.

    ``LightningModule.trainer`` raises when no Trainer is attached (a method module built for
    ``configure_optimizers`` alone, as benchmarks/throughput.py's hand-written step does); the
    attribute behind it is the only way to ask without catching that error."""
    return module._trainer


def should_update_logs(trainer) -> bool:
    """True on the steps whose on-step values Lightning writes.

    Lightning decides it in ``_LoggerConnector.should_update_logs`` (every
    ``log_every_n_steps`` batches that stepped, plus the stopping step); the public Trainer
    has ``log_every_n_steps`` but neither that decision nor the count it uses
    (``_batches_that_stepped``, not ``global_step``, which counts every optimizer's steps:
    the regularizers' own optimizers step too). A stand-in trainer (tests) logs every step."""
    connector = getattr(trainer, "_logger_connector", None)
    return connector is None or connector.should_update_logs


def cluster_environment(trainer):
    """The job's cluster environment (``SLURMEnvironment`` under SLURM).

    Lightning's SignalConnector reads it here to decide whether SLURM auto-requeue owns SIGUSR1;
    the public ``trainer.strategy.cluster_environment`` exists only on parallel strategies, so
    a one-GPU SLURM job would look like no cluster at all."""
    return trainer._accelerator_connector.cluster_environment


def lightning_sigterm_broadcast(loop) -> None:
    """Lightning's own per-step SIGTERM broadcast of ``loop`` (benchmarks and tests time and
    compare it against PreemptionCheckpoint's decision)."""
    _TrainingEpochLoop._broadcast_sigterm_tensor(loop)


def replace_sigterm_broadcast(loop, replacement) -> bool:
    """Make ``loop`` call ``replacement`` instead of its per-step SIGTERM broadcast; False when
    this Lightning has none. Lightning offers no switch for it: it broadcasts on every step of
    a multi-process run, although only its own SIGTERM handler (not installed while
    PreemptionCheckpoint owns SIGTERM) could ever set the flag it sends. An instance attribute,
    so ``restore_sigterm_broadcast`` brings Lightning's method back."""
    if not hasattr(loop, SIGTERM_BROADCAST):
        return False
    setattr(loop, SIGTERM_BROADCAST, replacement)
    return True


def restore_sigterm_broadcast(loop) -> None:
    vars(loop).pop(SIGTERM_BROADCAST, None)
