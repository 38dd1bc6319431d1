"""One pretraining run: resolve, check every input, prepare the run directory, fit, summarise.

The steps: ``_resolve`` (config and run directory from the request), ``_build`` (data module
and model, every input checked), ``_prepare_run_dir`` (lock, create or reopen the directory,
``_resume_checkpoint``: the resume policy, config.yaml), ``_fit`` (the Trainer of
``infossl.trainer_factory``) and ``_outcome`` (the summary; ``infossl.cli_train`` writes it as
metrics.json through ``infossl.rundir.write_metrics``).

Every check that can fail on user input runs before the run directory is created, so bad input
never leaves anything behind or touches an existing run.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from infossl import config as C
from infossl.errors import UserError
from infossl.reliability.run_lock import RunDirLock
from infossl.rundir import (
    clear_half_made,
    create_run_dir,
    export_backbone,
    is_launching_process,
    last_checkpoint,
    refuse_existing,
    remove_stale_temporaries,
    run_dir_of_checkpoint,
    warn,
    write_config,
)

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from infossl.data.datamodule import SSLDataModule

# torch, Lightning and timm (several seconds of imports) are imported inside the functions
# that use them, after ``_resolve``: a bad method, override, config file, key or value is
# answered before they load (tests/test_cli_startup.py, benchmarks/cli_startup.py).

DEFAULT_DATA = "cifar10"  # the papers' benchmark; the offline demo passes --data digits
QUICK_DATA = "digits"  # --quick without --data: the offline demo (no download)


# One lock per run directory and process, kept until the process exits: a second run of the
# same directory from this process (a benchmark resuming in-process) reuses it.
_HELD_LOCKS: dict[Path, RunDirLock] = {}


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
    quick: bool = False  # --quick: configs/quick.yaml over the method x data config


@dataclass
class ResolvedRun:
    cfg: DictConfig
    run_dir: Path
    checkpoint: Path | None  # --resume PATH (--resume auto chooses under the run's lock)
    resuming_existing_dir: bool
    fork_of: Path | None = None  # --resume PATH --name NEW: the run PATH belongs to


def _resolve(req: TrainRequest) -> ResolvedRun:
    checkpoint = None
    run_dir = source = None
    if req.resume not in (None, "auto"):
        checkpoint = Path(req.resume)
        if not checkpoint.is_file():
            raise UserError(
                f"--resume {req.resume}: no such checkpoint file; pass an existing "
                ".ckpt path or --resume auto"
            )
        from infossl.reliability.checkpoint_io import load_checkpoint_safely

        load_checkpoint_safely(checkpoint)  # refuses corrupt files and pickled code early
        source = run_dir_of_checkpoint(checkpoint)
        # --name picks the run to write; without it the checkpoint's own run continues.
        run_dir = req.run_root / req.name if req.name else source
    fork_of = source if source and run_dir and run_dir.resolve() != source else None

    data = req.data or (QUICK_DATA if req.quick else DEFAULT_DATA)
    if run_dir is None:
        if req.method is None and req.name is None:
            raise UserError(
                "--method is required (e.g. --method infonce --data digits); "
                "to resume a run give its --name with --resume auto"
            )
        suffix = "-quick" if req.quick else ""  # never the full run's directory
        run_dir = req.run_root / (req.name or f"{req.method}-{data}{suffix}")
    _check_writable(run_dir, req.run_root)

    existing = (run_dir / "config.yaml").is_file()
    resuming_dir = req.resume is not None and existing and fork_of is None
    if resuming_dir or fork_of:
        # A fork continues the source run's training state, so it starts from its config.
        cfg = C.stored_config((fork_of or run_dir) / "config.yaml")
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
        cfg = C.default_config(req.method, data, req.quick)
    if req.config:
        cfg = C.merge_file(cfg, req.config)
    cfg = C.merge_values(cfg, req.flags)
    cfg = C.apply_overrides(cfg, req.overrides)
    cfg = C.resolve_interpolations(cfg)
    cfg = C.resolve_views(cfg)
    cfg = C.normalize_regularizers(cfg)
    C.validate(cfg)
    return ResolvedRun(cfg, run_dir, checkpoint, resuming_dir, fork_of)


def _checked_checkpoint(path: Path, expected_keys: set[str]) -> Path:
    """--resume PATH must be a training checkpoint of this model (refused in one line)."""
    from infossl.reliability.checkpoint_io import load_checkpoint_safely
    from infossl.reliability.resume import not_a_training_checkpoint

    problem = not_a_training_checkpoint(load_checkpoint_safely(path, mmap=True), expected_keys)
    if problem:
        raise UserError(f"--resume {path}: not a training checkpoint of this run ({problem})")
    return path


def _open_run_dir(run: ResolvedRun, resume: str | None) -> bool:
    """Create, fork into or reopen the run directory (the launching process, holding the run's
    lock); True when it was created now (nothing in it to resume from)."""
    run_dir = run.run_dir
    if run.fork_of is not None:
        create_run_dir(run_dir)  # refuses an existing NEW: a fork never writes into a run
        print(f"forking {run.fork_of} at {run.checkpoint} into the new run {run_dir}")
        return True
    if not run_dir.is_dir() or resume is None:
        create_run_dir(run_dir)  # refuses an existing one, saying whether it has a checkpoint
        return True
    removed = remove_stale_temporaries(run_dir)
    if removed:
        megabytes = sum(size for _, size in removed) / 1e6
        warn(
            f"removed {len(removed)} temporary file(s) of a write interrupted when its process "
            f"died ({megabytes:.1f} MB: {', '.join(name for name, _ in removed)}); the files "
            "they were replacing are intact"
        )
    return False


def _resume_checkpoint(
    run: ResolvedRun, resume: str | None, expected_keys: set[str], launching: bool
) -> Path | None:
    """The resume policy: the checkpoint to continue from (None: from scratch).

    --resume PATH continues from PATH (a fork too); --resume auto from the run's newest usable
    checkpoint, chosen by the launching process (after ``_open_run_dir``, saying what it found)
    and silently, the same way, by DDP ranks > 0; a run without one starts again from scratch.
    """
    from infossl.reliability.resume import choose_resume_checkpoint

    if resume != "auto":
        return run.checkpoint
    if not launching:
        return choose_resume_checkpoint(run.run_dir, expected_keys).path
    choice = choose_resume_checkpoint(run.run_dir, expected_keys)
    for message in choice.messages:
        warn(message)
    if choice.path is None:
        cleared = clear_half_made(run.run_dir)
        extra = f"; removed its {cleared} TensorBoard file(s)" if cleared else ""
        print(
            f"run {run.run_dir} holds no checkpoint (it stopped before its first epoch ended): "
            f"starting it from scratch{extra}"
        )
    return choice.path


def _warn_if_schedule_changes(checkpoint: Path, cfg: dict) -> None:
    from infossl.reliability.checkpoint_io import load_checkpoint_safely

    trained = load_checkpoint_safely(checkpoint, mmap=True).get("hyper_parameters", {})
    before = trained.get("cfg", {}).get("trainer", {}).get("epochs")
    now = cfg["trainer"]["epochs"]
    if before is not None and before != now:
        warn(
            f"trainer.epochs is {now} but {checkpoint} was trained with a {before}-epoch "
            f"schedule: the learning rate of the remaining steps changes, so this run will not "
            f"equal one started with {now} epochs; to split a run into jobs exactly, keep "
            "trainer.epochs and end each job with trainer.stop_after_epoch=N"
        )


def _check_writable(run_dir: Path, run_root: Path) -> None:
    """Refuse a run directory that cannot be written, before anything else happens."""
    place = run_dir
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise UserError(f"--run-dir {run_root}: {place} is a file, not a directory")
    if not os.access(place, os.W_OK | os.X_OK):
        raise UserError(
            f"--run-dir {run_root}: {place} is not writable (read-only file system or no "
            "permission); choose another --run-dir"
        )


def _check_trains_something(datamodule: SSLDataModule, cfg: dict, processes: int) -> None:
    """An epoch of zero steps would 'finish' without training: refuse it. Every process gets
    ceil(n / processes) items (DistributedSampler pads), and the loader drops the last partial
    batch (contrastive losses need full batches)."""
    n = len(datamodule.train_set)
    batch = cfg["data"]["batch_size"]
    if math.ceil(n / processes) // batch == 0:
        fraction = cfg["data"]["train_fraction"]
        subset = f" (data.train_fraction={fraction})" if fraction != 1 else ""
        raise UserError(
            f"the training set holds {n} image(s){subset}, fewer than one batch of "
            f"{batch} x {processes} process(es): an epoch would train nothing; use "
            f"--batch-size {max(2, n // processes)} or less, or more data"
        )


ARCHITECTURE_SECTIONS = ("method", "backbone", "projector", "loss", "regularizers", "data")


def _check_resume_fits(method: pl.LightningModule, checkpoint: Path, cfg: dict) -> None:
    """Refuse to resume from weights that do not fit the model this config builds (a changed
    width, projector or image-size stem), naming the config keys that differ, before the run
    directory is touched: loading would fail only after config.yaml was replaced."""
    from infossl.reliability.checkpoint_io import load_checkpoint_safely

    state = load_checkpoint_safely(checkpoint, mmap=True)
    stored = state.get("state_dict", {})
    expected = method.state_dict()
    mismatched = sorted(set(stored) ^ set(expected)) + sorted(
        k for k in set(stored) & set(expected) if tuple(stored[k].shape) != tuple(expected[k].shape)
    )
    if not mismatched:
        return
    old = C.flat_keys(state.get("hyper_parameters", {}).get("cfg", {}))
    new = C.flat_keys(cfg)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shaping = [k for k in changed if k.split(".")[0] in ARCHITECTURE_SECTIONS] or changed
    what = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in shaping[:6])
    raise UserError(
        f"cannot resume from {checkpoint}: its weights do not fit the model of this config "
        f"({len(mismatched)} tensor(s) differ, e.g. {mismatched[0]}; changed keys: "
        f"{what or 'none'}); resume without changing them, or start another --name"
    )


@dataclass
class _Built:
    """What a run trains, built and checked before anything is written."""

    plain: dict
    devices: dict
    speed: dict
    datamodule: SSLDataModule
    method: pl.LightningModule


def run_training(req: TrainRequest) -> dict | None:
    """Fit one run; return the final metrics in the launching process (None elsewhere)."""
    run = _resolve(req)
    from infossl.console import quiet_console

    quiet_console()
    built = _build(run, req)
    expected_keys = set(built.method.state_dict())
    launching = is_launching_process()
    if launching:
        checkpoint = _prepare_run_dir(run, req.resume, built, expected_keys)
    else:
        checkpoint = _resume_checkpoint(run, req.resume, expected_keys, launching=False)
    return _fit(run, checkpoint, built)


def _build(run: ResolvedRun, req: TrainRequest) -> _Built:
    """Data module and model, every input checked. The model is built before anything is
    written: a backbone that cannot be built, or weights to resume that do not fit it, leave
    no directory and no changed file behind."""
    import pytorch_lightning as pl

    from infossl.backbones import check_pretrained_weights
    from infossl.data.datamodule import SSLDataModule
    from infossl.methods import METHODS
    from infossl.runtime import resolve_devices
    from infossl.speed import apply_to_model, resolve_speed

    plain = C.to_plain(run.cfg)
    devices = resolve_devices(plain["trainer"], req.gpus)
    speed = resolve_speed(plain, devices["accelerator"])
    datamodule = SSLDataModule(plain, speed)
    method_class = METHODS[plain["method"]]
    method_class.check_config(plain, datamodule.num_classes)
    datamodule.check_available()
    _check_trains_something(datamodule, plain, devices["devices"] * plain["trainer"]["num_nodes"])
    check_pretrained_weights(plain["backbone"])

    pl.seed_everything(plain["seed"], workers=True, verbose=False)
    method = apply_to_model(method_class(plain, datamodule.num_classes), speed)
    if run.checkpoint is not None:
        _checked_checkpoint(run.checkpoint, set(method.state_dict()))
        _check_resume_fits(method, run.checkpoint, plain)
    return _Built(plain, devices, speed, datamodule, method)


def _prepare_run_dir(
    run: ResolvedRun, resume: str | None, built: _Built, expected_keys: set[str]
) -> Path | None:
    """The launching process: lock, create or reopen the run directory, choose the checkpoint
    to resume from and write config.yaml; return that checkpoint."""
    if resume is None or run.fork_of is not None:
        refuse_existing(run.run_dir)  # before the lock, whose file would be rewritten
    # Held until this process exits (metrics.json is written after the fit, under it too);
    # the kernel drops the lock of a process that died, SIGKILL included.
    try:
        _HELD_LOCKS.setdefault(run.run_dir.resolve(), RunDirLock(run.run_dir)).acquire()
        created = _open_run_dir(run, resume)
        checkpoint = (
            run.checkpoint
            if created
            else _resume_checkpoint(run, resume, expected_keys, launching=True)
        )
        if checkpoint is not None and checkpoint != run.checkpoint:
            _check_resume_fits(built.method, checkpoint, built.plain)  # --resume auto chose it
        write_config(run.run_dir, run.cfg, resuming=run.run_dir.joinpath("config.yaml").is_file())
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise UserError(
            f"cannot write the run directory {run.run_dir} ({err.strerror}); choose "
            "another --run-dir"
        ) from err
    print(f"run directory {run.run_dir} (config.yaml, TensorBoard events, checkpoints/)")
    if checkpoint is not None:
        print(f"resuming from {checkpoint}")
        _warn_if_schedule_changes(checkpoint, built.plain)
    return checkpoint


def _fit(run: ResolvedRun, checkpoint: Path | None, built: _Built) -> dict | None:
    """Assemble the Trainer (``infossl.trainer_factory``), fit, and summarise the outcome."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from infossl.trainer_factory import build_trainer

    method = built.method
    last = last_checkpoint(run.run_dir)
    method.nonfinite_guard.last_checkpoint = lambda: str(last) if last.is_file() else None
    trainer = build_trainer(built.plain, run.run_dir, built.devices, built.speed)
    preempted = False
    try:
        trainer.fit(
            method,
            datamodule=built.datamodule,
            ckpt_path=str(checkpoint) if checkpoint else None,
        )
    except SIGTERMException:
        preempted = True  # last.ckpt was saved at the step boundary by PreemptionCheckpoint
    return _outcome(run, checkpoint, built, trainer, preempted)


def _outcome(
    run: ResolvedRun, checkpoint: Path | None, built: _Built, trainer: pl.Trainer, preempted: bool
) -> dict | None:
    """The run's summary (metrics.json, without the CLI's fields) in the launching process,
    after exporting the backbone and saying how the run ended; None in the other processes."""
    from infossl.callbacks import BadImageCounter
    from infossl.reliability.preemption import PreemptionCheckpoint

    plain, devices, method = built.plain, built.devices, built.method
    t = plain["trainer"]
    status = "preempted" if preempted else "finished"
    preemption = next(c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint))
    if preemption.saved_step is not None:
        status = "preempted"
    elif trainer.current_epoch < t["epochs"]:
        status = "stopped early"
    counter = next((c for c in trainer.callbacks if isinstance(c, BadImageCounter)), None)
    skipped_images = counter.total(trainer) if counter else 0
    if not trainer.is_global_zero:
        return None
    backbone_file = export_backbone(run.run_dir, method.backbone)
    if status == "preempted":
        print(
            f"preempted: saved {last_checkpoint(run.run_dir)} at step {preemption.saved_step}; "
            "continue with --resume auto"
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
        "speed": built.speed,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "backbone_file": str(backbone_file),
        "status": status,
        "nonfinite_skipped": method.nonfinite_guard.skipped,
        "skipped_images": skipped_images,
        "metrics": metrics,
    }
