"""Fault tolerance end to end: preemption, crash-safe checkpoints, fallback, NaN, bad images,
a dying DDP peer, and two runs racing for one name."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from train_helpers import ROOT, TINY, train

from infossl.reliability.checkpoint_io import load_checkpoint_safely

pytestmark = pytest.mark.slow
BASE = ["--method", "infonce", "--data", "digits", *TINY, "diagnostics.every_n_epochs=0"]


def _popen(run_dir, name, *args):
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "--run-dir",
        str(run_dir),
        "--name",
        name,
        *BASE,
        *args,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(process, pattern, timeout=240):
    """Read the progress bar (Lightning writes it to stdout) until ``pattern`` shows up."""
    seen = []
    thread = threading.Thread(
        target=lambda: [seen.append(c) for c in iter(lambda: process.stdout.read(32), "")],
        daemon=True,
    )
    thread.start()
    deadline = time.time() + timeout
    while not re.search(pattern, "".join(seen)):
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.time() < deadline, "".join(seen)[-2000:]
        time.sleep(0.1)


def test_sigterm_mid_epoch_saves_and_resume_finishes_at_the_same_step(tmp_path):
    args = ["--batch-size", "16", "--epochs", "2"]  # 89 steps per epoch
    process = _popen(tmp_path, "pre", *args)
    _wait_for(process, r"Epoch 0:\s+[2-9]\d%")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    saved = load_checkpoint_safely(tmp_path / "pre" / "checkpoints" / "last.ckpt")
    assert 0 < saved["global_step"] < 89  # mid-epoch
    metrics = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    assert metrics["status"] == "preempted"

    resumed = train(tmp_path, "pre", "--resume", "auto", *args, "diagnostics.every_n_epochs=0")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert metrics["global_step"] == 2 * 89  # as an uninterrupted run


SLOW_SAVE = """
import sys, time, torch
from infossl.reliability import checkpoint_io
path = sys.argv[1]
real_save = torch.save
def slow_save(obj, handle):
    handle.write(b"PK" + b"x" * 1000)  # a partial archive, as a kill mid-write would leave
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)
checkpoint_io.torch.save = slow_save
checkpoint_io.atomic_torch_save({"state_dict": {"w": torch.ones(3)}, "global_step": 2}, path)
"""


def test_sigkill_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.ckpt"
    from infossl.reliability.checkpoint_io import atomic_torch_save

    atomic_torch_save({"state_dict": {"w": torch.zeros(3)}, "global_step": 1}, path)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    checkpoint = load_checkpoint_safely(path)
    assert checkpoint["global_step"] == 1 and torch.equal(
        checkpoint["state_dict"]["w"], torch.zeros(3)
    )
    assert list(tmp_path.glob(".last.ckpt.*.tmp"))  # the torn write went to a temporary file


def test_corrupted_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    first = train(
        tmp_path,
        "fb",
        "--method",
        "infonce",
        "--epochs",
        "3",
        "checkpoint.every_n_epochs=1",
        "trainer.stop_after_epoch=2",
        "diagnostics.every_n_epochs=0",
    )
    assert first.returncode == 0, first.stderr[-2000:]
    last = tmp_path / "fb" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])  # truncated, as a full disk would leave it
    resumed = train(tmp_path, "fb", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"last\.ckpt is unreadable.*resuming from .*epoch=001\.ckpt", resumed.stderr)
    metrics = json.loads((tmp_path / "fb" / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("epoch=001.ckpt")
    assert metrics["global_step"] == 3 * (1437 // 64)


def test_nan_loss_stops_with_terms_and_last_checkpoint(tmp_path):
    result = train(
        tmp_path,
        "nan",
        "--method",
        "infonce",
        "--epochs",
        "2",
        "training.inject_nan_at_steps=[30]",
        "diagnostics.every_n_epochs=0",
    )
    assert result.returncode == 1
    line = [ln for ln in result.stderr.splitlines() if "stopped:" in ln]
    assert len(line) == 1 and "Traceback" not in result.stderr
    assert "non-finite loss at step 30" in line[0] and "train/loss=nan" in line[0]
    assert "train/log_partition=" in line[0]
    assert "last good checkpoint: " + str(tmp_path / "nan" / "checkpoints" / "last.ckpt") in line[0]


def test_skip_nonfinite_finishes_and_counts(tmp_path):
    result = train(
        tmp_path,
        "skip",
        "--method",
        "infonce",
        "--epochs",
        "1",
        "training.inject_nan_at_steps=[3,7]",
        "training.skip_nonfinite=2",
        "diagnostics.every_n_epochs=0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("non-finite loss at step") == 2
    metrics = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert metrics["nonfinite_skipped"] == 2 and metrics["status"] == "finished"


def _folder_with_bad_images(root: Path) -> Path:
    """28 good images in 2 classes, one truncated PNG and one text file named .jpg."""
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(14):
            Image.new("RGB", (20, 20), (15 * i, 120 * c, 7)).save(root / f"c{c}" / f"{i}.png")
    good = root / "c0" / "0.png"
    (root / "c0" / "truncated.png").write_bytes(good.read_bytes()[:40])
    (root / "c1" / "notes.jpg").write_text("this is not an image")
    return root


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_bad_images_are_skipped_and_counted_or_stop_with_the_path(tmp_path, policy):
    data = _folder_with_bad_images(tmp_path / "images")
    result = train(
        tmp_path,
        f"bad-{policy}",
        "--method",
        "infonce",
        "--data",
        "folder",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "data.image_size=16",
        f"data.on_bad_image={policy}",
        "diagnostics.every_n_epochs=0",
    )
    if policy == "skip":
        assert result.returncode == 0, result.stderr[-2000:]
        metrics = json.loads((tmp_path / "bad-skip" / "metrics.json").read_text())
        assert metrics["skipped_images"] == 2  # 30 files, batch 10: no batch is dropped
        assert "skipped 2 unreadable image(s)" in result.stdout
    else:
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert re.search(r"unreadable image .*(truncated\.png|notes\.jpg)", result.stderr)


def test_killing_one_ddp_process_ends_both_within_the_timeout(tmp_path):
    process = _popen(
        tmp_path,
        "ddp",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--epochs",
        "5",
        "--batch-size",
        "16",
        "trainer.ddp_timeout_s=30",
    )
    _wait_for(process, r"Epoch 0:\s+[1-9]\d*%")
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
    ).stdout.split()
    workers = [
        int(pid)
        for pid in children
        if "train.py" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
    ]
    assert workers, children
    started = time.time()
    os.kill(workers[0], signal.SIGKILL)
    process.wait(timeout=90)
    assert time.time() - started < 60
    assert process.returncode != 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_two_runs_with_one_name_started_together_cannot_both_write(tmp_path):
    first = _popen(tmp_path, "race", "--epochs", "1")
    second = _popen(tmp_path, "race", "--epochs", "1")
    codes = sorted([first.wait(timeout=300), second.wait(timeout=300)])
    assert codes == [0, 2]
    loser = first if first.returncode == 2 else second
    message = loser.stderr.read()
    # Refused by the run's lock while the winner runs, or by the existing directory after.
    assert "is in use by another run (pid " in message or "already exists" in message
