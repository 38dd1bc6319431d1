"""The run directory layout and the checkpoint format version, in one place.

``<run-dir>/<name>/`` holds config.yaml, checkpoints/, TensorBoard events, metrics.json and
backbone.pt; every training checkpoint carries the format version key.

Nothing here ever overwrites another run: a new run refuses an existing directory, only the
launching process (global rank 0) creates or writes anything, and it does so holding the run's
lock (``infossl.reliability.run_lock``), so whatever temporary file it finds was left by a
writer that died.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf


class RunDirError(ValueError):
    """A run-directory request that would overwrite or cannot be served."""


def is_launching_process() -> bool:
    """True in the process that decides and writes (global rank 0 of this job).

    Lightning's DDP launcher re-runs this script for ranks 1..N-1 with LOCAL_RANK set;
    torchrun and SLURM set RANK / SLURM_PROCID for every process.
    """
    global_rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    return global_rank == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


# Stamped in every training checkpoint (``methods.base.BaseMethod.on_save_checkpoint``) so a
# reader can tell which layout it holds; checkpoints without the key predate the stamp.
CHECKPOINT_FORMAT_KEY = "infossl_format_version"
CHECKPOINT_FORMAT_VERSION = 1
BACKBONE_FILE = "backbone.pt"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def last_checkpoint(run_dir: Path) -> Path:
    return checkpoint_dir(run_dir) / "last.ckpt"


def export_backbone(run_dir: Path, backbone) -> Path:
    """Write the trained backbone alone as a plain ``state_dict`` (as VICReg ships
    ``resnet50.pth``): CPU tensors in the standard memory layout, no InfoSSL prefix, so a user
    loads it into the torchvision / timm / lightly model without InfoSSL."""
    from infossl.reliability.checkpoint_io import atomic_torch_save  # torch: only when writing

    state = {
        # torch.compile wraps the module: its keys gain "_orig_mod.", which a plain model lacks.
        key.replace("_orig_mod.", ""): value.detach().cpu().contiguous()
        for key, value in backbone.state_dict().items()
    }
    path = run_dir / BACKBONE_FILE
    atomic_torch_save(state, path)
    return path


def warn(message: str) -> None:
    """One line on stderr: something the user should know that does not stop the run."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def has_checkpoint(run_dir: Path) -> bool:
    directory = checkpoint_dir(run_dir)
    return directory.is_dir() and any(directory.glob("*.ckpt"))


def remove_stale_temporaries(run_dir: Path) -> list[tuple[str, int]]:
    """Delete the temporary files of interrupted atomic writes (``.NAME.XXXX.tmp`` of
    ``checkpoint_io.atomic_torch_save``, ``config.yaml.tmp``); return (name, bytes) of each.
    Only call it holding the run's lock: then no live writer owns them."""
    found = [*checkpoint_dir(run_dir).glob(".*.tmp"), *run_dir.glob("*.tmp")]
    removed = []
    for path in sorted(p for p in found if p.is_file()):
        removed.append((path.name, path.stat().st_size))
        path.unlink()
    return removed


def clear_half_made(run_dir: Path) -> int:
    """A run directory that has no checkpoint (its run stopped before the first epoch ended)
    is started again from scratch: its TensorBoard files describe steps that will be redone
    and would show as a second curve. Returns how many files were removed."""
    stale = [*run_dir.glob("events.out.tfevents.*"), *run_dir.glob("hparams.yaml")]
    for path in stale:
        path.unlink()
    checkpoint_dir(run_dir).mkdir(exist_ok=True)
    return len(stale)


def run_dir_of_checkpoint(path: Path) -> Path | None:
    """The run a checkpoint belongs to, when it lies in ``<run>/checkpoints/``."""
    path = path.resolve()
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def refuse_existing(run_dir: Path) -> None:
    """A new run (or a fork) never writes into an existing directory; say what to do instead."""
    if not run_dir.exists():
        return
    if not has_checkpoint(run_dir):
        raise RunDirError(
            f"run directory {run_dir} already exists but holds no checkpoint (an earlier "
            "start stopped before its first epoch ended); --resume auto starts it again "
            "from scratch, or choose another --name"
        )
    raise RunDirError(
        f"run directory {run_dir} already exists; continue it with --resume auto, "
        "or choose another --name"
    )


def create_run_dir(run_dir: Path) -> None:
    """Create a fresh run directory; refuse one that exists (even if empty)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()  # atomic: of two runs started with one name at once, one fails here
    except FileExistsError:
        refuse_existing(run_dir)
        raise
    checkpoint_dir(run_dir).mkdir()


def write_config(run_dir: Path, cfg, resuming: bool) -> None:
    """Write the resolved config; on resume keep the previous one when it changed."""
    path = run_dir / "config.yaml"
    text = OmegaConf.to_yaml(cfg)
    if resuming and path.is_file():
        old = path.read_text()
        if old == text:
            return
        path.rename(run_dir / f"config.before-resume-{time.strftime('%Y%m%d-%H%M%S')}.yaml")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(run_dir: Path, result: dict) -> Path:
    """Write the run's summary as ``metrics.json`` (atomically: a reader never sees half)."""
    path = run_dir / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return path
