"""Checkpoints that are always whole on disk and never execute code when loaded.

Saving writes a temporary file in the same directory, flushes and fsyncs it, then renames it over
the target (``os.replace`` is atomic on POSIX) and fsyncs the directory: a process killed at any
moment leaves either the previous checkpoint or the new one, never a truncated file.
Loading always uses ``torch.load(weights_only=True)``: a checkpoint carrying pickled code is
refused with a clear error instead of being executed. (Lightning's own ``TorchCheckpointIO``
serialises into memory and then writes the target file in place: a kill mid-write truncates it.)

What a Lightning 2.6 checkpoint holds and what breaks ``weights_only`` (measured in
tests/reliability/test_checkpoint_io.py): ``epoch``, ``global_step``, ``state_dict``,
``optimizer_states``, ``lr_schedulers``, ``loops`` (progress counters: ints and dicts),
``callbacks`` (ModelCheckpoint keeps paths as str and scores as tensors), ``hparams_name`` and
``hyper_parameters`` all load as long as the module's ``save_hyperparameters()`` arguments are
plain. These are refused: an OmegaConf ``DictConfig``/``ListConfig`` (pass
``OmegaConf.to_container(cfg, resolve=True)``), ``pathlib.Path`` (pass ``str``), NumPy scalars
and arrays (``float(x)`` / ``torch.from_numpy``), any class instance or function in
hyper-parameters or in a callback's ``state_dict``. ``LambdaLR`` with a plain lambda is fine
(PyTorch leaves functions out of its state).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from infossl.errors import Fault


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or unsafe; the message is one line."""


class CheckpointWriteError(Fault):
    """A checkpoint could not be written (disk full, quota, I/O error); the previous file at
    that path is intact."""


class _RecordingWriter:
    """The file object torch.save writes to, keeping the OSError of a failed write: torch's
    zip writer reports it only as ``RuntimeError: ... unexpected pos``."""

    def __init__(self, handle):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.handle.flush()


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _write_error(path: Path, err: OSError) -> CheckpointWriteError:
    free = shutil.disk_usage(path.parent).free
    previous = f"; the previous {path.name} is kept" if path.is_file() else ""
    need = f", it needs about {_mib(path.stat().st_size)}" if path.is_file() else ""
    what = "disk full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
    return CheckpointWriteError(
        f"cannot write checkpoint {path}: {what} ({_mib(free)} free in {path.parent}{need})"
        f"{previous}; free some space, then continue with --resume auto"
    )


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that leaves either the old file or the whole new one, never a torn file.

    Writes a temporary file in the same directory, fsyncs it, renames it over ``path``
    (``os.replace``, atomic on POSIX) and fsyncs the directory.

    Args:
        obj: what ``torch.save`` accepts.
        path: the target file; its parent directories are created.

    Raises:
        CheckpointWriteError: one line naming the path and the OS error (e.g. a full disk).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    writer = None
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = _RecordingWriter(handle)
            torch.save(obj, writer)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        failed = writer.error if writer is not None and writer.error else err
        if isinstance(failed, OSError) and failed.errno is not None:
            raise _write_error(path, failed) from err
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _looks_like_pickle(path: Path) -> bool:
    # torch.save's legacy (non-zip) format and plain pickles start with the PROTO opcode.
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def load_checkpoint_safely(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """``torch.load(weights_only=True)``: a checkpoint's tensors and plain values, never code.

    Args:
        path: the checkpoint file.
        map_location: as ``torch.load``'s.
        mmap: map tensors instead of reading them (cheap metadata look-ups).

    Returns:
        The loaded dict.

    Raises:
        CheckpointError: one line for a missing, foreign, truncated or corrupted file and for
            one that carries pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; give the path of a .ckpt file written by train.py"
        )
    is_zip = zipfile.is_zipfile(path)
    if not is_zip and not _looks_like_pickle(path):
        raise CheckpointError(
            f"{path} is not a checkpoint (neither a torch.save zip archive nor a pickle); is it "
            "truncated or another kind of file?"
        )
    try:
        checkpoint = torch.load(
            path, map_location=map_location, weights_only=True, mmap=mmap and is_zip
        )
    except pickle.UnpicklingError as err:
        # weights_only's restricted unpickler names the first forbidden global; keep it.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        hint = f" (first forbidden: {found.group(1)})" if found else ""
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled code/objects that are not tensors "
            f"or plain Python types{hint}; never load untrusted pickles"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
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
