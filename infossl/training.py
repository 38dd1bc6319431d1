"""One pretraining run: resolve the config, check every input, then build and fit.

Every check that can fail on user input runs before the run directory is created, so bad input
never leaves anything behind or touches an existing run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from infossl import config as C
from infossl.cli import UserError
from infossl.rundir import (
    checkpoint_dir,
    create_run_dir,
    is_launching_process,
    run_dir_of_checkpoint,
    write_config,
)

# torch, Lightning and timm are imported inside the functions that use them: _resolve runs
# without them, so a config error answers in a fraction of a second (tests/test_cli_startup.py).

DEFAULT_DATA = "cifar10"  # the papers' benchmark; the offline demo passes --data digits


@dataclass
class TrainRequest:
    method: str | None
    data: str | None
    config: str | None = None
    flags: dict = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    gpus: int | None = None
    resume: str | None = None
    run_root: Path = Path("runs")
    name: str | None = None


@dataclass
class ResolvedRun:
    cfg: DictConfig
    run_dir: Path
    checkpoint: Path | None  # what to resume from, if anything
    resuming_existing_dir: bool


def _resolve(req: TrainRequest) -> ResolvedRun:
    checkpoint = None
    run_dir = None
    if req.resume not in (None, "auto"):
        checkpoint = Path(req.resume)
        if not checkpoint.is_file():
            raise UserError(
                f"--resume {req.resume}: no such checkpoint file; pass an existing "
                ".ckpt path or --resume auto"
            )
        from infossl.reliability.checkpoint_io import load_checkpoint_safely

        load_checkpoint_safely(checkpoint)  # refuses corrupt files and pickled code early
        run_dir = run_dir_of_checkpoint(checkpoint)

    data = req.data or DEFAULT_DATA
    if run_dir is None:
        if req.method is None and req.name is None:
            raise UserError(
                "--method is required (e.g. --method infonce --data digits); "
                "to resume a run give its --name with --resume auto"
            )
        run_dir = req.run_root / (req.name or f"{req.method}-{data}")

    existing = (run_dir / "config.yaml").is_file()
    if req.resume == "auto" and existing:
        from infossl.reliability.resume import find_resume_checkpoint

        checkpoint = find_resume_checkpoint(run_dir)

    resuming_dir = req.resume is not None and existing
    if resuming_dir:
        cfg = C.stored_config(run_dir / "config.yaml")
        for given, key in ((req.method, "method"), (req.data, "data.name")):
            stored = cfg.method if key == "method" else cfg.data.name
            if given is not None and given != stored:
                raise UserError(
                    f"run {run_dir} was trained with {key}={stored}, not {given}; "
                    "resume it without changing that, or start another --name"
                )
    else:
        if req.method is None:
            raise UserError(
                f"no run to resume in {run_dir}; start one with --method"
                if req.resume
                else "--method is required for a new run (e.g. --method infonce)"
            )
        cfg = C.default_config(req.method, data)
    if req.config:
        cfg = C.merge_file(cfg, req.config)
    cfg = C.merge_values(cfg, req.flags)
    cfg = C.apply_overrides(cfg, req.overrides)
    cfg = C.resolve_views(cfg)
    cfg = C.normalize_regularizers(cfg)
    C.validate(cfg)
    return ResolvedRun(cfg, run_dir, checkpoint, resuming_dir)


def _callbacks(cfg: dict, run_dir: Path) -> list:
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

    from infossl.callbacks import (
        BadImageCounter,
        LastCheckpointEveryEpoch,
        RNGStateCheckpoint,
        StopAfterEpoch,
        Throughput,
    )
    from infossl.reliability.preemption import PreemptionCheckpoint

    checkpoints = ModelCheckpoint(
        dirpath=checkpoint_dir(run_dir),
        filename="epoch={epoch:03d}",
        auto_insert_metric_name=False,
        every_n_epochs=cfg["checkpoint"]["every_n_epochs"],
        save_top_k=-1,
        save_last=False,
    )
    # last.ckpt after every epoch, the numbered ones every checkpoint.every_n_epochs.
    last = LastCheckpointEveryEpoch(checkpoint_dir(run_dir) / "last.ckpt")
    callbacks = [
        checkpoints,
        last,
        RNGStateCheckpoint(),
        Throughput(),
        TQDMProgressBar(refresh_rate=10),
        PreemptionCheckpoint(checkpoint_dir(run_dir) / "last.ckpt"),
    ]
    if cfg["data"]["name"] == "folder":
        callbacks.append(BadImageCounter())
    if cfg["trainer"]["stop_after_epoch"]:
        callbacks.append(StopAfterEpoch(cfg["trainer"]["stop_after_epoch"]))
    from infossl.methods.hooks import extra_callbacks

    return callbacks + extra_callbacks(cfg)


def run_training(req: TrainRequest) -> dict | None:
    """Fit one run; return the final metrics in the launching process (None elsewhere)."""
    run = _resolve(req)
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from infossl.backbones import check_pretrained_weights
    from infossl.callbacks import BadImageCounter
    from infossl.console import QuietTensorBoardLogger, quiet_console
    from infossl.data.datamodule import SSLDataModule
    from infossl.methods import METHODS
    from infossl.reliability.checkpoint_io import AtomicCheckpointIO
    from infossl.reliability.preemption import PreemptionCheckpoint
    from infossl.runtime import resolve_devices, strategy_for
    from infossl.speed import apply_to_model, resolve_speed

    quiet_console()
    cfg = run.cfg
    plain = C.to_plain(cfg)
    devices = resolve_devices(plain["trainer"], req.gpus)
    speed = resolve_speed(plain, devices["accelerator"])
    datamodule = SSLDataModule(plain, speed)
    datamodule.check_available()
    if not datamodule.num_classes and any(r["name"] == "knife_mi" for r in plain["regularizers"]):
        raise UserError(
            f"regularizer knife_mi needs labels, and --data {plain['data']['name']} has none here; "
            "use a labelled dataset or a knife_entropy term"
        )
    check_pretrained_weights(plain["backbone"])

    launching = is_launching_process()
    if launching:
        if not run.resuming_existing_dir:
            create_run_dir(run.run_dir)
        write_config(run.run_dir, cfg, resuming=run.resuming_existing_dir)
        if run.checkpoint is not None:
            print(f"resuming from {run.checkpoint}")

    pl.seed_everything(plain["seed"], workers=True, verbose=False)
    method = apply_to_model(METHODS[plain["method"]](plain, datamodule.num_classes), speed)
    last = checkpoint_dir(run.run_dir) / "last.ckpt"
    method.nonfinite_guard.last_checkpoint = lambda: str(last) if last.is_file() else None
    t = plain["trainer"]
    trainer = pl.Trainer(
        max_epochs=t["epochs"],
        accelerator=devices["accelerator"],
        devices=devices["devices"],
        num_nodes=t["num_nodes"],
        strategy=strategy_for(devices["devices"], t["num_nodes"], t["ddp_timeout_s"]),
        precision=devices["precision"],
        # torch's SyncBatchNorm refuses CPU modules ("only work with GPU modules"); on CPU
        # (gloo) each process normalises its own batch, as lightly's benchmarks do.
        sync_batchnorm=t["sync_batchnorm"]
        and devices["accelerator"] == "gpu"
        and devices["devices"] * t["num_nodes"] > 1,
        deterministic=t["deterministic"],
        benchmark=speed["cudnn_benchmark"],
        log_every_n_steps=t["log_every_n_steps"],
        default_root_dir=str(run.run_dir),  # where Lightning's SLURM requeue saves hpc_ckpt_*
        logger=QuietTensorBoardLogger(
            save_dir=str(run.run_dir.parent),
            name=run.run_dir.name,
            version="",
            default_hp_metric=False,
        ),
        callbacks=_callbacks(plain, run.run_dir),
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,  # a sanity pass would consume RNG and break resume equality
        enable_model_summary=False,
    )
    status = "finished"
    try:
        trainer.fit(
            method, datamodule=datamodule, ckpt_path=str(run.checkpoint) if run.checkpoint else None
        )
    except SIGTERMException:
        status = "preempted"  # last.ckpt was saved at the step boundary by PreemptionCheckpoint
    preemption = next(c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint))
    if preemption.saved_step is not None:
        status = "preempted"
    elif trainer.current_epoch < t["epochs"]:
        status = "stopped early"
    counter = next((c for c in trainer.callbacks if isinstance(c, BadImageCounter)), None)
    skipped_images = counter.total(trainer) if counter else 0
    if not trainer.is_global_zero:
        return None
    if status == "preempted":
        print(
            f"preempted: saved {last} at step {preemption.saved_step}; continue with --resume auto"
        )
    if skipped_images:
        print(f"skipped {skipped_images} unreadable image(s) (data.on_bad_image=skip)")
    metrics = {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if "/" in k and v.numel() == 1 and math.isfinite(float(v))
    }
    return {
        "run_dir": run.run_dir,
        "method": plain["method"],
        "data": plain["data"]["name"],
        "backbone": plain["backbone"]["name"],
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "devices": devices["devices"] * t["num_nodes"],
        "precision": devices["precision"],
        "speed": speed,
        "resumed_from": str(run.checkpoint) if run.checkpoint else None,
        "status": status,
        "nonfinite_skipped": method.nonfinite_guard.skipped,
        "skipped_images": skipped_images,
        "metrics": metrics,
    }
