"""ReMINE's supervised and contrastive benchmarks end to end on a slice of digits: the files they
write agree with each other, training beats chance, and --resume runs only what is missing."""

import json

import numpy as np
import pytest

from benchmarks import remine_downstream as bench

TINY = [
    "--seeds",
    "0",
    "--epochs",
    "1",
    "--train-fraction",
    "0.4",
    "--image-size",
    "8",
    "--width",
    "0.125",
]


def _runs(out):
    return json.loads((out / "results.json").read_text())["runs"]


def test_slb_learns_the_labels_and_the_table_holds_the_json_means(tmp_path):
    out = tmp_path / "slb"
    assert bench.main(["slb", "--losses", "mine", "--out", str(out), *TINY]) == 0
    runs = _runs(out)
    assert [(r["loss"], r["regularized"]) for r in runs] == [("mine", False), ("mine", True)]
    for r in runs:
        assert r["status"] == "finished" and r["steps"] == 57  # 574 images // batch 10
        assert r["test_accuracy"] > 0.3  # chance is 0.1
        assert 0 < r["mi_estimate"] < np.log(10)  # a lower bound on I(X; Y) = log 10
    row = (out / "table.md").read_text().splitlines()[4]
    orig, reg = (f"{r['mi_estimate']:.3f} ± 0.000" for r in runs)
    assert row.startswith(f"| mine | {orig} | {reg} |")
    assert (out / "accuracy.png").stat().st_size > 0


def test_clb_resume_runs_only_the_missing_runs(tmp_path, monkeypatch):
    out = tmp_path / "clb"
    args = ["clb", "--losses", "infonce", "--out", str(out), *TINY]
    assert bench.main(args) == 0
    first = _runs(out)
    assert len(first) == 2 and all(0.1 < r["test_accuracy"] <= 1 for r in first)
    calls = []
    monkeypatch.setattr(bench, "train_run", lambda *a: calls.append(a) or pytest.fail("rerun"))
    assert bench.main([*args, "--resume"]) == 0
    assert calls == [] and _runs(out) == first
    with pytest.raises(SystemExit, match="exists"):
        bench.main(args)  # without --resume an existing result is not overwritten
