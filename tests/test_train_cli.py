"""train.py end to end on digits: outputs, resume equivalence, DDP on CPU, and bad input."""

import json
import re

import pytest
import torch
from train_helpers import assert_one_line_error, snapshot, tensorboard_scalars, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_epoch(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = train(
        root, "straight", "--method", "infonce", "--epochs", "2", "checkpoint.every_n_epochs=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "straight", result


@pytest.fixture(scope="module")
def two_epoch_run(two_epoch):
    return two_epoch[0]


# What Lightning and the libraries print that a user can do nothing about (silenced in
# infossl/console.py); the console holds progress, the run directory, the result and problems.
NOISE = (
    "Tip:",
    "GPU available",
    "TPU available",
    "HPU available",
    "LOCAL_RANK",
    "Deprecat",
    "deprecated",
    "exists and is not empty",
    "hparams",
    "Loading `train_dataloader`",
    "Restor",  # "Restoring states from the checkpoint path at ..."
    "Warning:",
    "warnings.warn",
)


def console_lines(result) -> list[str]:
    """stdout + stderr split at newlines and at the progress bar's carriage returns, without
    its cursor movements (ANSI escapes)."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", result.stdout + result.stderr).replace("\r", "\n")
    return [line.strip() for line in text.splitlines() if line.strip()]


def assert_quiet(result) -> list[str]:
    lines = console_lines(result)
    noise = [line for line in lines if any(n in line for n in NOISE)]
    assert noise == [], noise
    return [line for line in lines if not line.startswith(("Epoch ", "Validation", "Training"))]


def test_console_holds_the_run_directory_progress_and_the_result_only(two_epoch):
    run, result = two_epoch
    metrics = json.loads((run / "metrics.json").read_text())
    top1 = metrics["metrics"]["val/online_top1"]
    # Progress bars aside, exactly three lines: where the run is, how it ended, what was written.
    assert assert_quiet(result) == [
        f"run directory {run} (config.yaml, TensorBoard events, checkpoints/)",
        f"finished: 2 epochs, {metrics['global_step']} steps in {metrics['wall_time_s']} s; "
        f"val/online_top1={top1:.3f}",
        f"wrote {run / 'metrics.json'}",
    ]
    assert any(line.startswith("Epoch 1: 100%") for line in console_lines(result))
    # The resolved config is config.yaml; Lightning's duplicate hparams.yaml is not written.
    assert not (run / "hparams.yaml").exists() and (run / "config.yaml").is_file()


def test_run_writes_config_events_checkpoints_and_metrics(two_epoch_run):
    run = two_epoch_run
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "epoch=001.ckpt").is_file()
    scalars = tensorboard_scalars(run)
    for tag in (
        "train/loss",
        "train/lr",
        "val/online_top1",
        "train/images_per_sec",
        "train/mi_estimate",
    ):
        assert tag in scalars, sorted(scalars)
    assert len(scalars["val/online_top1"]) == 2  # one per epoch
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "infonce" and metrics["epochs"] == 2
    steps_per_epoch = 1437 // 64  # digits train split, drop_last
    assert metrics["global_step"] == 2 * steps_per_epoch
    assert 0.0 <= metrics["metrics"]["val/online_top1"] <= 1.0


def test_checkpoint_loads_with_weights_only(two_epoch_run):
    ckpt = torch.load(two_epoch_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["cfg"]["method"] == "infonce"
    assert any(k.startswith("backbone.") for k in ckpt["state_dict"])


def test_resume_at_epoch_boundary_matches_uninterrupted_run(two_epoch_run, tmp_path):
    # The first job stops after epoch 1 of a 2-epoch schedule (as a preempted job would).
    first = train(
        tmp_path, "split", "--method", "infonce", "--epochs", "2", "trainer.stop_after_epoch=1"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    second = train(tmp_path, "split", "--method", "infonce", "--epochs", "2", "--resume", "auto")
    assert second.returncode == 0, second.stderr[-3000:]
    # Resuming into its own, non-empty checkpoint folder is expected: no warning about it.
    said = assert_quiet(second)
    assert said[:2] == [
        f"run directory {tmp_path / 'split'} (config.yaml, TensorBoard events, checkpoints/)",
        f"resuming from {tmp_path / 'split' / 'checkpoints' / 'last.ckpt'}",
    ]
    straight = torch.load(two_epoch_run / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"]
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(
            resumed["state_dict"][key], value, atol=1e-6, rtol=0, msg=f"{key} differs after resume"
        )
    # TensorBoard continues the same run directory.
    assert len(list((tmp_path / "split").glob("events.out.tfevents.*"))) == 2


def test_ddp_on_two_cpu_processes_completes(tmp_path):
    result = train(
        tmp_path,
        "ddp",
        "--method",
        "infonce",
        "--epochs",
        "1",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--batch-size",
        "32",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["devices"] == 2
    assert metrics["global_step"] == (1437 // 2) // 32  # each process sees half the data


def test_bad_input_in_a_real_process_is_one_line_exit_2_and_writes_nothing(tmp_path):
    # Every bad-input class runs in-process in tests/test_bad_inputs.py; this one proves the
    # script itself, started as a user starts it, keeps the promise.
    result = train(tmp_path, "new", "--method", "simclrr")
    assert_one_line_error(result, "unknown method 'simclrr'", "infonce")
    assert snapshot(tmp_path) == {} and not (tmp_path / "new").exists()


def test_missing_data_directory_says_where_it_looked(tmp_path):
    result = train(
        tmp_path,
        "c10",
        "--method",
        "infonce",
        "--data",
        "cifar10",
        "--data-dir",
        str(tmp_path / "nothing-here"),
    )
    assert_one_line_error(result, str(tmp_path / "nothing-here"), "--download")
    assert not (tmp_path / "c10").exists()
