"""The Lightning Trainer of a training run, assembled in one place.

Its callbacks, TensorBoard logger, DDP strategy, precision and the atomic checkpoint I/O.

``infossl.training`` (train.py) and ``benchmarks/throughput.py`` both build their Trainer here,
so the benchmark times the loop train.py runs. Imported after the config is resolved (it loads
Lightning: several seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

from infossl.callbacks import (
    BadImageCounter,
    LastCheckpointEveryEpoch,
    RNGStateCheckpoint,
    StopAfterEpoch,
    Throughput,
)
from infossl.console import QuietTensorBoardLogger
from infossl.reliability.checkpoint_io import AtomicCheckpointIO
from infossl.reliability.preemption import PreemptionCheckpoint
from infossl.rundir import checkpoint_dir, last_checkpoint
from infossl.runtime import strategy_for

# The callbacks that write checkpoints at epoch ends; ``checkpoints=False`` leaves them out.
CHECKPOINT_WRITERS = (ModelCheckpoint, LastCheckpointEveryEpoch)


def build_callbacks(cfg: dict, run_dir: Path, checkpoints: bool = True) -> list[pl.Callback]:
    """Every callback of a training run, in the order the Trainer calls them."""
    callbacks: list[pl.Callback] = []
    if checkpoints:
        callbacks += [
            ModelCheckpoint(
                dirpath=checkpoint_dir(run_dir),
                filename="epoch={epoch:03d}",
                auto_insert_metric_name=False,
                every_n_epochs=cfg["checkpoint"]["every_n_epochs"],
                save_top_k=-1,
                save_last=False,
            ),
            # last.ckpt after every epoch, the numbered ones every checkpoint.every_n_epochs.
            LastCheckpointEveryEpoch(last_checkpoint(run_dir)),
        ]
    callbacks += [
        RNGStateCheckpoint(),
        Throughput(),
        TQDMProgressBar(refresh_rate=10),
        # Under DDP the processes agree on a signal at logging steps (one all-reduce each).
        PreemptionCheckpoint(last_checkpoint(run_dir), cfg["trainer"]["log_every_n_steps"]),
    ]
    if cfg["data"]["name"] == "folder":
        callbacks.append(BadImageCounter())
    if cfg["trainer"]["stop_after_epoch"]:
        callbacks.append(StopAfterEpoch(cfg["trainer"]["stop_after_epoch"]))
    d = cfg["diagnostics"]
    if d["every_n_epochs"] > 0:
        from infossl.eval.monitor import CollapseMonitor

        callbacks.append(
            CollapseMonitor(
                d["every_n_epochs"], d["num_samples"], d["collapse_fraction"], d["knife_entropy"]
            )
        )
    return callbacks


def build_trainer(
    cfg: dict,
    run_dir: Path,
    devices: dict,
    speed: dict,
    *,
    checkpoints: bool = True,
    extra_callbacks: tuple | list = (),
    max_steps: int = -1,
    limit_val_batches: int | float | None = None,
) -> pl.Trainer:
    """The Trainer train.py fits, logging to and checkpointing into ``run_dir``.

    Args:
        cfg: a resolved plain config (``infossl.config.to_plain``).
        run_dir: the run directory: TensorBoard events, ``checkpoints/``, Lightning's
            ``default_root_dir``.
        devices: ``accelerator``, ``devices`` (per node) and ``precision``
            (``infossl.runtime.resolve_devices``).
        speed: the resolved speed settings (``infossl.speed.resolve_speed``).
        checkpoints: False leaves out the epoch-end checkpoint writers (``CHECKPOINT_WRITERS``)
            and Lightning's own: ``benchmarks/throughput.py`` times steps, it keeps no weights.
            Every other callback stays.
        extra_callbacks: appended after the run's own (the benchmark's timing windows).
        max_steps, limit_val_batches: Lightning's limits, for runs shorter than the config's
            schedule (the benchmark: its timed steps, no validation); defaults: train.py's.
    """
    t = cfg["trainer"]
    processes = devices["devices"] * t["num_nodes"]
    return pl.Trainer(
        max_epochs=t["epochs"],
        max_steps=max_steps,
        limit_val_batches=limit_val_batches,
        accelerator=devices["accelerator"],
        devices=devices["devices"],
        num_nodes=t["num_nodes"],
        strategy=strategy_for(devices["devices"], t["num_nodes"], t["ddp_timeout_s"]),
        precision=devices["precision"],
        # torch's SyncBatchNorm refuses CPU modules ("only work with GPU modules"); on CPU
        # (gloo) each process normalises its own batch, as lightly's benchmarks do.
        sync_batchnorm=t["sync_batchnorm"] and devices["accelerator"] == "gpu" and processes > 1,
        deterministic=t["deterministic"],
        benchmark=speed["cudnn_benchmark"],
        log_every_n_steps=t["log_every_n_steps"],
        default_root_dir=str(run_dir),  # where Lightning's SLURM requeue saves hpc_ckpt_*
        logger=QuietTensorBoardLogger(
            save_dir=str(run_dir.parent),
            name=run_dir.name,
            version="",
            default_hp_metric=False,
        ),
        callbacks=[*build_callbacks(cfg, run_dir, checkpoints), *extra_callbacks],
        enable_checkpointing=checkpoints,
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,  # a sanity pass would consume RNG and break resume equality
        enable_model_summary=False,
    )
