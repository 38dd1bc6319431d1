"""The MI methods through train.py on digits: named scalars, DDP on CPU, resume of loss state,
and (CorInfoMax) no collapse and learning beyond random initialisation."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from train_helpers import assert_one_line_error, run_script, tensorboard_scalars, train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("method", "extra"), [("flo", []), ("remine", ["loss.estimator=nwj"])])
def test_mi_methods_train_and_log_the_remine_terms(tmp_path, method, extra):
    result = train(
        tmp_path,
        method,
        "--method",
        method,
        "--epochs",
        "1",
        "diagnostics.every_n_epochs=0",
        *extra,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scalars = tensorboard_scalars(tmp_path / method)
    for tag in ("train/mi_estimate", "train/joint_term", "train/log_partition", "train/loss"):
        assert tag in scalars, sorted(scalars)
        assert all(torch.isfinite(torch.tensor(v)) for _, v in scalars[tag])


def test_remine_defaults_train_the_official_remine_dv_plus_regularizer(tmp_path):
    # Official ReMINE (Deconstructing-MINE experiments_self_contrastive.py: remine): in-batch DV
    # + lambda (log E_Q[e^T] - C)^2, no moving average.
    result = train(
        tmp_path,
        "remine",
        "--method",
        "remine",
        "--epochs",
        "1",
        "data.train_fraction=0.4",
        "trainer.log_every_n_steps=1",
        "diagnostics.every_n_epochs=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loss_cfg = OmegaConf.load(tmp_path / "remine" / "config.yaml").loss
    assert (loss_cfg.estimator, loss_cfg.reg_weight, loss_cfg.reg_target) == ("dv", 0.1, 0.0)
    scalars = {k: dict(v) for k, v in tensorboard_scalars(tmp_path / "remine").items()}
    steps = sorted(scalars["train/loss"])
    assert len(steps) >= 5
    for step in steps:
        mi, joint = scalars["train/mi_estimate"][step], scalars["train/joint_term"][step]
        log_z = scalars["train/log_partition"][step]
        assert mi == pytest.approx(joint - log_z, abs=1e-4)  # the DV value
        assert scalars["train/loss"][step] == pytest.approx(-mi + 0.1 * log_z**2, abs=1e-4)
    # DV, not MINE: the moving average was never updated
    ckpt = torch.load(tmp_path / "remine" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["criterion.ema"].item() == 1.0


def test_corinfomax_without_enough_gpus_is_one_clear_line(tmp_path):
    result = run_script(
        "train.py", "--method", "corinfomax", "--gpus", "8", "--run-dir", str(tmp_path)
    )
    assert_one_line_error(result, "8 CUDA GPU", "has 0")
    assert not any(tmp_path.iterdir())


def test_corinfomax_runs_ddp_on_two_cpu_processes(tmp_path):
    result = train(
        tmp_path,
        "ddp",
        "--method",
        "corinfomax",
        "--epochs",
        "1",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--batch-size",
        "32",
        "diagnostics.every_n_epochs=0",
        "data.train_fraction=0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["devices"] == 2


def test_corinfomax_buffers_resume_bit_exactly(tmp_path):
    common = ["--method", "corinfomax", "--epochs", "2", "diagnostics.every_n_epochs=0"]
    common += ["data.train_fraction=0.3"]  # 6 steps an epoch: the buffers still move
    straight = train(tmp_path, "straight", *common)
    first = train(tmp_path, "split", *common, "trainer.stop_after_epoch=1")
    assert straight.returncode == 0 and first.returncode == 0, first.stderr[-2000:]
    after_one = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)
    assert after_one["state_dict"]["criterion.R1"].dtype == torch.float64
    second = train(tmp_path, "split", *common, "--resume", "auto")
    assert second.returncode == 0, second.stderr[-2000:]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)
    for name in ("criterion.mu1", "criterion.mu2", "criterion.R1", "criterion.R2"):
        assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, atol=1e-6, rtol=0)


def test_corinfomax_keeps_rank_high_and_beats_random_init(tmp_path):
    result = train(tmp_path, "cim", "--method", "corinfomax", "--epochs", "6")
    assert result.returncode == 0, result.stderr[-3000:]
    scalars = tensorboard_scalars(tmp_path / "cim")
    for tag in (
        "train/alignment_mse",
        "train/logdet_view1",
        "train/logdet_view2",
        "train/cond_view1",
        "train/cond_view2",
        "val/online_top1",
    ):
        assert tag in scalars
    # 32-d embeddings (tests' projector): a collapsed run would sit near 1.
    assert scalars["diag/embeddings/effective_rank"][-1][1] > 16
    ckpt = str(tmp_path / "cim" / "checkpoints" / "last.ckpt")
    for extra in ([], ["--random-init"]):
        out = run_script(
            "eval_linear.py", "--ckpt", ckpt, "--epochs", "10", "--num-workers", "0", *extra
        )
        assert out.returncode == 0, out.stderr[-2000:]
    trained = json.loads((tmp_path / "cim" / "eval" / "digits_linear_last.json").read_text())
    random = json.loads((tmp_path / "cim" / "eval" / "digits_linear_random_init.json").read_text())
    assert (
        trained["protocols"]["kNN k=200"]["top1"] >= random["protocols"]["kNN k=200"]["top1"] + 0.1
    )
