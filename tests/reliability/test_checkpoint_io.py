"""Atomic saves survive SIGKILL mid-write; loading never runs pickled code; a checkpoint written
by a Lightning Trainer (with this project's kind of callbacks) loads with weights_only=True,
and the hyper-parameter types that would break that are named."""

import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from reliability_tiny import TinyModule, make_trainer

from infossl.callbacks import RNGStateCheckpoint
from infossl.reliability.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_torch_save,
    load_checkpoint_safely,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]

# A writer whose torch.save puts a partial archive on disk and then hangs, to be SIGKILLed.
SLOW_SAVE = textwrap.dedent("""
    import sys, time
    import torch
    from infossl.reliability import checkpoint_io
    def stuck_save(obj, handle):
        handle.write(b"PK\\x03\\x04" + b"x" * 4096)
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
    checkpoint_io.torch.save = stuck_save
    checkpoint_io.atomic_torch_save({"global_step": 2, "w": torch.ones(3)}, sys.argv[1])
""")


def test_sigkill_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1, "w": torch.zeros(3)}, path)
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    checkpoint = load_checkpoint_safely(path)
    assert checkpoint["global_step"] == 1 and torch.equal(checkpoint["w"], torch.zeros(3))
    torn = list(tmp_path.glob(".last.ckpt.*.tmp"))
    assert len(torn) == 1 and torn[0].stat().st_size == 4 + 4096  # the torn write went there


def test_failed_save_removes_its_temporary_file_and_keeps_the_target(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a local lambda
        atomic_torch_save({"global_step": 2, "bad": lambda: None}, path)
    assert load_checkpoint_safely(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


class _RunsShell:
    def __reduce__(self):  # would run a shell command if unpickled without weights_only
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_carrying_code_is_refused_without_running_it(tmp_path, writer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    if writer == "torch.save":
        torch.save({"state_dict": {}, "payload": _RunsShell()}, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump({"payload": _RunsShell()}, handle)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_safely(path)
    message = str(err.value)
    assert message.startswith(f"refusing to load {path}: it contains pickled code/objects")
    assert "\n" not in message
    if writer == "torch.save":
        assert "first forbidden: posix.system" in message
    assert not (tmp_path / "PWNED").exists()


def test_missing_foreign_and_truncated_files_get_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"^checkpoint .*nope\.ckpt does not exist"):
        load_checkpoint_safely(tmp_path / "nope.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("epoch 3 looked good")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt is not a checkpoint"):
        load_checkpoint_safely(text)
    whole = tmp_path / "whole.ckpt"
    atomic_torch_save({"w": torch.randn(1000)}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[:2000])  # a pre-atomic, interrupted write
    with pytest.raises(CheckpointError, match=r"cut\.ckpt is not a checkpoint") as err:
        load_checkpoint_safely(cut)
    assert "\n" not in str(err.value)


def test_a_lightning_trainer_checkpoint_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    module = TinyModule(n=16, batch_size=4)
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_epochs=1)
    trainer = make_trainer(
        tmp_path, [checkpoints, RNGStateCheckpoint()], max_epochs=1, enable_checkpointing=True
    )
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    trainer.fit(module)
    checkpoint = load_checkpoint_safely(tmp_path / "last.ckpt")
    assert checkpoint["global_step"] == 4 and checkpoint["epoch"] == 0
    assert torch.equal(checkpoint["state_dict"]["layer.weight"], module.layer.weight.detach())
    assert checkpoint["optimizer_states"][0]["state"][0]["momentum_buffer"].shape == (1, 1)
    assert checkpoint["lr_schedulers"][0]["last_epoch"] == 1
    assert {"ModelCheckpoint", "RNGStateCheckpoint"} <= {
        k.split("{")[0] for k in checkpoint["callbacks"]
    }
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == 4
    assert checkpoint["hyper_parameters"]["batch_size"] == 4
    # ... and Lightning resumes from it through the same plugin.
    resumed = make_trainer(tmp_path, [RNGStateCheckpoint()], max_epochs=2)
    resumed.fit(TinyModule(n=16, batch_size=4), ckpt_path=tmp_path / "last.ckpt")
    assert resumed.global_step == 8


@pytest.mark.parametrize(
    ("value", "forbidden"),
    [
        (OmegaConf.create({"lr": 0.1}), "omegaconf.dictconfig.DictConfig"),
        (pathlib.Path("/data"), "pathlib.PosixPath"),
        (np.float64(0.1), "numpy"),
    ],
)
def test_hyper_parameters_that_break_weights_only_loading(tmp_path, value, forbidden):
    module = TinyModule(log_path=None, n=4, batch_size=4)
    module.hparams["extra"] = value
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError, match=f"first forbidden: {forbidden}"):
        load_checkpoint_safely(tmp_path / "m.ckpt")
