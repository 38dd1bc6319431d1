"""A run is never lost or overwritten, through train.py: a fork writes a new run and leaves its
source byte-for-byte untouched, a second process on a running run is refused, a resume is
bit-identical with loader workers, stale temporaries and foreign checkpoints are dealt with,
a changed epoch count warns, and a run killed before its first checkpoint restarts cleanly."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import ROOT, TINY, assert_one_line_error, run_script, train

pytestmark = pytest.mark.slow

# 144 training images (10 % of the digits train split), batch 32: 4 steps per epoch, and 2
# persistent loader workers (the digits default) so that resume exactness covers workers.
SMALL = [
    "--method",
    "infonce",
    "--batch-size",
    "32",
    "--num-workers",
    "2",
    "data.image_size=8",
    "data.train_fraction=0.1",
    "diagnostics.every_n_epochs=0",
]
STEPS = 144 // 32


def _train(root, name, *args):
    result = train(root, name, *SMALL, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _popen(root, name, *args):
    command = [sys.executable, str(ROOT / "train.py"), "--data", "digits", "--run-dir", str(root)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, "--name", name, *TINY, *SMALL, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_until(condition, process, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, "train.py ended before the awaited moment"
        assert time.time() < deadline
        time.sleep(0.01)


def _hashes(run_dir):
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert differ == [], f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def _warnings(result):
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def source(root):
    """Two epochs uninterrupted, a numbered checkpoint after each."""
    _train(root, "src", "--epochs", "2", "checkpoint.every_n_epochs=1")
    return root / "src"


@pytest.fixture(scope="module")
def fork(root, source):
    before = _hashes(source)
    result = _train(root, "fork", "--resume", str(source / "checkpoints" / "epoch=000.ckpt"))
    return before, result, root / "fork"


def test_a_fork_writes_a_new_run_with_the_full_state_and_leaves_the_source_untouched(source, fork):
    before, result, new = fork
    assert _hashes(source) == before  # not one byte of the source run changed
    assert f"forking {source} at " in result.stdout
    metrics = json.loads((new / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("src/checkpoints/epoch=000.ckpt")
    assert metrics["global_step"] == 2 * STEPS
    # Full training state (weights, optimizer, schedule, RNG, data epoch) carried: continuing
    # epoch 2 in the fork gives exactly the source's own epoch 2.
    _assert_same_weights(
        _weights(new / "checkpoints" / "last.ckpt"), _weights(source / "checkpoints" / "last.ckpt")
    )


@pytest.fixture(scope="module")
def reresumed(fork):
    """The finished fork resumed with --resume auto, one more epoch, after a writer died
    mid-write and a foreign file that loads was saved as the newest-looking checkpoint."""
    new = fork[2]
    stale = new / "checkpoints" / ".epoch=002.ckpt.k2j4x_9q.tmp"
    stale.write_bytes(b"PK" + b"\0" * 500_000)  # as a SIGKILL during a save leaves it
    fake = new / "checkpoints" / "epoch=999.ckpt"
    torch.save({"global_step": 10**9, "epoch": 999}, fake)
    result = _train(new.parent, "fork", "--resume", "auto", "--epochs", "3")
    return result, new, stale, fake


def test_stale_temporaries_of_a_dead_writer_are_removed_and_named(reresumed):
    result, new, stale, _ = reresumed
    assert not stale.exists()
    assert not list(new.rglob("*.tmp"))
    [line] = [w for w in _warnings(result) if "temporary file" in w]
    assert "removed 1 temporary file(s)" in line and "(0.5 MB: " + stale.name + ")" in line


def test_a_loadable_foreign_checkpoint_is_skipped_with_a_warning_naming_it(reresumed):
    result, new, _, fake = reresumed
    [line] = [w for w in _warnings(result) if "epoch=999" in w]
    assert line == (
        f"warning: checkpoint {fake} is not a training checkpoint of this run (it has no "
        f"state_dict); resuming from {new / 'checkpoints' / 'last.ckpt'} (step {2 * STEPS}) "
        "instead"
    )
    metrics = json.loads((new / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(new / "checkpoints" / "last.ckpt")
    assert metrics["global_step"] == 3 * STEPS and metrics["status"] == "finished"


def test_changing_the_epoch_count_on_resume_warns_about_the_schedule(reresumed):
    result, new, _, _ = reresumed
    [line] = [w for w in _warnings(result) if "trainer.epochs" in w]
    assert line.startswith(
        f"warning: trainer.epochs is 3 but {new / 'checkpoints' / 'last.ckpt'} was trained "
        "with a 2-epoch schedule: the learning rate of the remaining steps changes"
    )
    assert "trainer.stop_after_epoch=N" in line


@pytest.fixture(scope="module")
def half_made(root):
    """A run SIGKILLed right after it wrote its config, before any checkpoint."""
    process = _popen(root, "split", "--epochs", "2")
    config = root / "split" / "config.yaml"
    _wait_until(config.is_file, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not list((root / "split").rglob("*.ckpt"))
    return root / "split"


def test_a_run_killed_before_its_first_checkpoint_restarts_from_scratch(source, half_made):
    # The dead process's lock does not block, and the half-made directory is restarted.
    result = _train(half_made.parent, "split", "--resume", "auto", "trainer.stop_after_epoch=1")
    assert (
        f"run {half_made} holds no checkpoint (it stopped before its first epoch ended): "
        "starting it from scratch"
    ) in result.stdout
    assert json.loads((half_made / "metrics.json").read_text())["resumed_from"] is None
    _assert_same_weights(
        _weights(half_made / "checkpoints" / "last.ckpt"),
        _weights(source / "checkpoints" / "epoch=000.ckpt"),
    )


def test_resume_at_an_epoch_boundary_with_loader_workers_is_bit_identical(source, half_made):
    # Runs after the test above: the first epoch of the split run is done, with 2 workers.
    assert json.loads((half_made / "metrics.json").read_text())["epochs"] == 1
    _train(half_made.parent, "split", "--resume", "auto", "--epochs", "2")
    _assert_same_weights(
        _weights(half_made / "checkpoints" / "last.ckpt"),
        _weights(source / "checkpoints" / "last.ckpt"),
    )


def test_a_second_process_on_a_running_run_is_refused_in_one_line(root):
    first = _popen(root, "busy", "--epochs", "100")
    lock = root / ".busy.lock"
    try:
        _wait_until(lambda: lock.is_file() and f"pid {first.pid} " in lock.read_text(), first)
        second = train(root, "busy", *SMALL, "--resume", "auto")
        assert first.poll() is None  # the first still runs
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert second.returncode == 2
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert lines[0].startswith(
        f"train.py: error: run directory {root / 'busy'} is in use by another run "
        f"(pid {first.pid} on "
    )


def test_evaluating_two_checkpoints_of_a_run_keeps_both_results(source):
    for name in ("epoch=000", "last"):
        result = run_script(
            "eval_linear.py",
            "--ckpt",
            str(source / "checkpoints" / f"{name}.ckpt"),
            "--epochs",
            "2",
            "--num-workers",
            "0",
        )
        assert result.returncode == 0, result.stderr[-3000:]
    steps = {
        name: json.loads((source / "eval" / f"digits_linear_{name}.json").read_text())
        for name in ("epoch=000", "last")
    }
    assert steps["epoch=000"]["pretraining_step"] == STEPS
    assert steps["last"]["pretraining_step"] == 2 * STEPS


def test_an_unwritable_out_fails_before_the_evaluation(source, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory is needed")
    result = run_script(
        "eval_linear.py",
        "--ckpt",
        str(source / "checkpoints" / "last.ckpt"),
        "--out",
        str(blocker / "result.json"),
    )
    # One line and nothing else: no feature extraction or probe training was started.
    assert_one_line_error(result, f"--out {blocker / 'result.json'} cannot be written")
    assert result.stdout == ""
