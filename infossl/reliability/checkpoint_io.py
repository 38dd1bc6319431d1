"""Checkpoints that are always whole on disk and never execute code when loaded.

Saving writes a temporary file in the same directory, flushes and fsyncs it, then renames it over
the target (``os.replace`` is atomic on POSIX) and fsyncs the directory: a process killed at any
moment leaves either the previous checkpoint or the new one, never a truncated file.
Loading always uses ``torch.load(weights_only=True)``: a checkpoint carrying pickled code is
refused with a clear error instead of being executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or unsafe; the message is one line."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint_safely(path: str | Path, map_location: Any = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; give the path of a .ckpt file written by train.py"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a checkpoint (not a torch.save zip archive); is it "
            "truncated or another kind of file?"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled code or objects that are not "
            "tensors or plain Python types (weights_only loading); never load untrusted pickles"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"{path} is corrupted or truncated ({type(err).__name__}); resume "
            "from an earlier checkpoint"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic saves and weights_only loads."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint_safely(path, map_location=map_location or "cpu")
