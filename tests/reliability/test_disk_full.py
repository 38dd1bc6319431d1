"""Disk full while a checkpoint is written: one line naming the file and the free space, the
previous last.ckpt intact and loadable, no temporary file left, and the run resumable."""

from __future__ import annotations

import errno
import os
import sys

import pytest
from train_helpers import TINY

import train
from infossl.cli import run_cli
from infossl.reliability import checkpoint_io
from infossl.reliability.checkpoint_io import (
    CheckpointWriteError,
    atomic_torch_save,
    load_checkpoint_safely,
)


class _FullDisk:
    """A file opened for writing on a disk that fills up after ``room`` bytes."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _fill_disk_on_write(monkeypatch, nth: int, room: int = 1000) -> list[int]:
    """The nth checkpoint write (1-based) hits a full disk."""
    calls = [0]
    real = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real(fd, mode, *args, **kwargs)
        calls[0] += 1
        return _FullDisk(handle, room) if calls[0] == nth else handle

    monkeypatch.setattr(checkpoint_io.os, "fdopen", fdopen)
    return calls


def test_full_disk_keeps_the_previous_file_and_says_how_much_space(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": list(range(1000))}, path)
    size = path.stat().st_size
    _fill_disk_on_write(monkeypatch, nth=1)
    with pytest.raises(CheckpointWriteError) as err:
        atomic_torch_save({"step": 2, "w": list(range(1000))}, path)
    message = str(err.value)
    assert message.startswith(f"cannot write checkpoint {path}: disk full (")
    assert f"it needs about {size / 2**20:.1f} MiB" in message and "MiB free in" in message
    assert "the previous last.ckpt is kept" in message and "--resume auto" in message
    assert load_checkpoint_safely(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no .tmp left


def test_disk_full_during_training_stops_in_one_line_and_the_run_resumes(
    tmp_path, monkeypatch, capsys
):
    args = ["--method", "infonce", "--data", "digits", "--run-dir", str(tmp_path)]
    args += ["--name", "full", *TINY, "data.train_fraction=0.1", "diagnostics.every_n_epochs=0"]
    _fill_disk_on_write(monkeypatch, nth=2)  # epoch 1 saves, epoch 2's last.ckpt fails
    monkeypatch.setattr(sys, "argv", ["train.py"])
    assert run_cli(lambda: train.main([*args, "--epochs", "2"])) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "cannot write" in line]
    last = tmp_path / "full" / "checkpoints" / "last.ckpt"
    assert len(lines) == 1 and f"stopped: cannot write checkpoint {last}: disk full" in lines[0]
    assert load_checkpoint_safely(last)["epoch"] == 0  # the first epoch's state
    assert not list(last.parent.glob("*.tmp"))
    monkeypatch.undo()
    monkeypatch.setattr(sys, "argv", ["train.py"])
    assert run_cli(lambda: train.main([*args, "--epochs", "2", "--resume", "auto"])) == 0
    assert load_checkpoint_safely(last)["epoch"] == 1
