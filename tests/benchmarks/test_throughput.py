"""benchmarks/throughput.py in a tiny configuration (seconds): valid JSON holding every part,
images/s consistent with its windows, the overhead ratio computed from the medians, and both
losses of the NT-Xent comparison equal (same formula)."""

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from benchmarks import _throughput_parts as P
from benchmarks import throughput as bench

TINY = [
    "--device",
    "cpu",
    "--backbone",
    "lightly:resnet-9",
    "--image-size",
    "16",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--warmup",
    "1",
    "--steps",
    "2",
    "--repeats",
    "2",
    "--rounds",
    "1",
    "--loss-batch",
    "32",
    "--loss-dim",
    "16",
    "--loss-repeats",
    "3",
    "--peak-size",
    "64",
    "--parts",
    "data,augment_kernels,step,train,loss,peak,variants",
    "--variants",
    "nchw",
    "backbone.width=0.125",
    "projector.hidden_dim=64",
    "projector.output_dim=32",
]


def test_tiny_cpu_run_writes_valid_json_with_every_part(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    torch.set_num_threads(1)
    assert bench.main([*TINY, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rates = result["images_per_s"]
    expected = {
        "data/cpu_augment",
        "data/gpu_augment",
        "augment_kernels",
        "step/manual",
        "step/lightning",
        "train/cpu_augment",
        "train/gpu_augment",
        "variant/default",
        "variant/nchw",
    }
    assert set(rates) == expected
    for r in rates.values():
        assert r["median"] == pytest.approx(statistics.median(r["windows"]))
        assert r["min"] == min(r["windows"]) and r["max"] == max(r["windows"])
        assert all(math.isfinite(w) and w > 0 for w in r["windows"])
    assert len(rates["step/manual"]["windows"]) == 2  # repeats x rounds
    assert len(rates["variant/nchw"]["windows"]) == 2  # repeats
    pairs = zip(rates["variant/nchw"]["windows"], rates["variant/default"]["windows"], strict=True)
    ratios = sorted(v / d for v, d in pairs)
    assert result["variant_speedup"]["nchw"]["median"] == pytest.approx(sum(ratios) / 2)
    overhead = 100 * (rates["step/manual"]["median"] / rates["step/lightning"]["median"] - 1)
    assert result["framework_overhead_pct"] == pytest.approx(overhead)
    ratio = rates["data/gpu_augment"]["median"] / rates["data/cpu_augment"]["median"]
    assert result["gpu_over_cpu_augment"] == pytest.approx(ratio)
    loss = result["loss_fwd_bwd"]
    assert loss["batch"] == 32 and loss["dim"] == 16
    # Same formula, same temperature: both losses agree, so the timings compare like with like.
    values = loss["loss_values"]
    assert values["infossl_infonce"] == pytest.approx(values["lightly_ntxent"], rel=1e-5)
    peak = result["peak"]
    assert peak["matmul_flops_per_s"] > 0 and peak["step_flops"] > 0
    frac = peak["step/manual_fraction_of_peak"]
    assert frac == pytest.approx(
        peak["step_flops"] * rates["step/manual"]["median"] / 8 / peak["matmul_flops_per_s"]
    )
    models = [n for n in rates if n.startswith(("step/", "variant/"))]
    assert {f"{n}_fraction_of_peak" for n in models} <= set(peak) and len(models) == 4
    assert result["config"]["speed"]["channels_last"] is True
    printed = capsys.readouterr().out
    assert "| step/lightning |" in printed and "framework overhead" in printed


def test_windows_time_only_after_warmup_and_count_images():
    clock = iter([10.0, 12.0, 13.0, 17.0])
    windows = P.Windows(warmup=2, steps=2, repeats=2, batch=5, device=torch.device("cpu"))
    real = P.time.perf_counter
    P.time.perf_counter = lambda: next(clock)
    try:
        done = [windows.tick() for _ in range(6)]
    finally:
        P.time.perf_counter = real
    assert done == [False] * 5 + [True]
    # Window edges after steps 2, 4, 6: 10 -> 12 s and 12 -> 13 s for 2 steps x 5 images.
    assert windows.rates == [10 / 2.0, 10 / 1.0]


def test_summary_median_spread_and_interquartile_range():
    s = P.summary([4.0, 1.0, 3.0, 2.0])
    assert (s["median"], s["min"], s["max"]) == (2.5, 1.0, 4.0)
    assert s["iqr_pct"] == pytest.approx(100 * (3.25 - 1.75) / 2.5)
    assert s["windows"] == [4.0, 1.0, 3.0, 2.0]  # time order kept, for paired ratios
    # Paired: a load change between repeats (here everything halves) cancels in each ratio.
    sp = P.paired_speedup([12.0, 6.0, 6.6], [10.0, 5.0, 6.0])
    assert (sp["median"], sp["min"], sp["max"]) == pytest.approx((1.2, 1.1, 1.2))


def test_flop_count_of_a_linear_step_matches_the_formula():
    # Forward 2*B*I*O, backward twice that (input and weight gradients).
    from torch.utils.flop_counter import FlopCounterMode

    layer = torch.nn.Linear(7, 3, bias=False)
    x = torch.randn(5, 7, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 5 * 7 * 3


def test_the_timed_trainer_is_train_py_trainer_without_the_checkpoint_writers(
    tmp_path, monkeypatch
):
    """step/lightning and train/* time train.py's Trainer: the same callbacks (minus the two
    epoch-end checkpoint writers, plus the timing windows), logger, strategy and precision."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
    from train_helpers import TINY as TRAIN_TINY

    from infossl import callbacks as cb
    from infossl import cli_train
    from infossl.console import QuietTensorBoardLogger
    from infossl.eval.monitor import CollapseMonitor
    from infossl.reliability.preemption import PreemptionCheckpoint

    fitted = []
    monkeypatch.setattr(pl.Trainer, "fit", lambda self, *a, **k: fitted.append(self))
    argv = ["--method", "infonce", "--data", "digits", "--accelerator", "cpu", "--epochs", "1"]
    cli_train.main([*argv, "--run-dir", str(tmp_path), "--name", "t", *TRAIN_TINY])
    (train_py,) = fitted

    args = bench.build_parser().parse_args([*TINY, "--out", str(tmp_path / "unused.json")])
    device = torch.device("cpu")
    cfg, speed, precision = bench._config(args, device)
    windows = P.Windows(1, 2, 2, cfg["data"]["batch_size"], device)
    timed = P.timed_trainer(cfg, speed, precision, device, windows, tmp_path / "logs")

    run_types = [type(c) for c in train_py.callbacks]
    shared = [
        cb.RNGStateCheckpoint,
        cb.Throughput,
        TQDMProgressBar,
        PreemptionCheckpoint,
        CollapseMonitor,
    ]
    assert run_types == [cb.LastCheckpointEveryEpoch, *shared, ModelCheckpoint], run_types
    assert [type(c) for c in timed.callbacks] == [*shared, P._WindowCallback]
    assert timed.checkpoint_callbacks == [] and len(train_py.checkpoint_callbacks) == 1
    for trainer in (train_py, timed):
        assert type(trainer.logger) is QuietTensorBoardLogger
        assert type(trainer.strategy).__name__ == "SingleDeviceStrategy"
        assert type(trainer.precision_plugin).__name__ == "Precision"  # "32" on CPU
    assert timed.max_steps == windows.total and timed.limit_val_batches == 0
    assert Path(timed.logger.log_dir) == tmp_path / "logs"  # as a run directory
