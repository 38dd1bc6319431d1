"""InfoNCE-type MI estimates next to their ceiling log K on one TensorBoard chart: the
``train/mi_ceiling_log_k`` scalar of tiny digits runs, read back from the event files, and the
custom-scalars layout that draws it with ``train/mi_estimate``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from train_helpers import tensorboard_scalars, train

pytestmark = pytest.mark.slow

CEILING = "train/mi_ceiling_log_k"


def custom_scalar_charts(log_dir: Path) -> dict[str, list[str]]:
    """Chart title -> tags of every multiline chart in the run's custom-scalars layouts."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    charts: dict[str, list[str]] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            if tag != "custom_scalars__config__":
                continue
            for event in acc.Tensors(tag):
                layout = layout_pb2.Layout()
                layout.ParseFromString(event.tensor_proto.string_val[0])
                for category in layout.category:
                    for chart in category.chart:
                        charts[chart.title] = list(chart.multiline.tag)
    return charts


def _run(tmp_path: Path, name: str, *args: str):
    result = train(
        tmp_path,
        name,
        "--epochs",
        "1",
        "data.train_fraction=0.2",  # 287 digits: 4 steps of 64, 2 of 2 x 64
        "trainer.log_every_n_steps=1",
        "diagnostics.every_n_epochs=0",
        *args,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tensorboard_scalars(tmp_path / name), custom_scalar_charts(tmp_path / name)


def test_infonce_logs_log_of_its_candidates_and_one_chart_with_the_estimate(tmp_path):
    scalars, charts = _run(tmp_path, "nce", "--method", "infonce")
    # NT-Xent, batch 64 on one process: each positive competes with 2 * 64 - 2 negatives.
    ceiling = dict(scalars[CEILING])
    estimate = dict(scalars["train/mi_estimate"])
    assert sorted(ceiling) == sorted(estimate) and len(ceiling) == 4
    for step, value in ceiling.items():
        assert value == pytest.approx(math.log(127), abs=1e-6)
        assert estimate[step] < value
    assert charts == {"train/mi_estimate vs its ceiling log K": ["train/mi_estimate", CEILING]}


def test_remine_infonce_ceiling_is_log_of_the_global_batch_over_two_processes(tmp_path):
    scalars, charts = _run(
        tmp_path,
        "ddp",
        "--method",
        "remine",
        "loss.estimator=infonce",
        "loss.reg_weight=0",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
    )
    ceiling = dict(scalars[CEILING])
    assert len(ceiling) == 287 // 128
    # InfoNCE on the gathered 128 x 128 score matrix (64 per process x 2 processes).
    assert all(v == pytest.approx(math.log(64 * 2), abs=1e-6) for v in ceiling.values())
    assert all(scalars["train/mi_estimate"][i][1] < math.log(128) for i in range(len(ceiling)))
    assert list(charts.values()) == [["train/mi_estimate", CEILING]]


def test_dv_has_no_ceiling_and_no_chart(tmp_path):
    scalars, charts = _run(tmp_path, "dv", "--method", "remine")  # default estimator: dv
    assert "train/mi_estimate" in scalars
    assert CEILING not in scalars
    assert charts == {}
