"""SSL methods table: a tiny two-method run, interrupted after its first run and resumed, writes
results.json, table.md and the PNG; the table's cells are the JSON's runs averaged by hand."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import _ssl_report as report
from benchmarks import ssl_methods as bench
from infossl.cli import UserError

TINY = [
    "--methods",
    "infonce",
    "remine/nwj+reg",
    "--seeds",
    "0",
    "--epochs",
    "1",
    "--backbone",
    "lightly:resnet-9",
    "--num-workers",
    "0",
    "backbone.width=0.125",
    "data.image_size=8",
    "data.train_fraction=0.2",
    "projector.hidden_dim=64",
    "projector.output_dim=32",
    "trainer.log_every_n_steps=1",
    "diagnostics.num_samples=64",
]


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """The tiny benchmark stopped (KeyboardInterrupt) as its second run starts, then resumed;
    returns the output folder and the (row, seed) each invocation started."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ssl_methods")
    original = bench.run_one
    started: list[list[tuple[str, int]]] = [[], []]

    def run_one(args, row, seed, baseline_ckpt, call):
        started[call].append((row.name if row else bench.RANDOM_INIT, seed))
        if call == 0 and len(started[0]) == 2:
            raise KeyboardInterrupt
        return original(args, row, seed, baseline_ckpt)

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(bench, "run_one", lambda *a: run_one(*a, call=0))
        with pytest.raises(KeyboardInterrupt):
            bench.main([*TINY, "--out", str(out)])
        after_interrupt = json.loads((out / "results.json").read_text())
        mp.setattr(bench, "run_one", lambda *a: run_one(*a, call=1))
        bench.main([*TINY, "--out", str(out), "--resume"])
    finally:
        mp.undo()
        torch.set_num_threads(before)
    return out, started, after_interrupt


def test_resume_runs_only_the_runs_missing_after_an_interrupt(interrupted_then_resumed):
    out, started, after_interrupt = interrupted_then_resumed
    assert started[0] == [("infonce", 0), ("random-init", 0)]  # interrupted as run 2 started
    assert [(r["row"], r["seed"]) for r in after_interrupt["runs"]] == [("infonce", 0)]
    assert started[1] == [("random-init", 0), ("remine/nwj+reg", 0)]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["row"] for r in runs] == ["infonce", "random-init", "remine/nwj+reg"]
    assert runs[0] == after_interrupt["runs"][0]  # the finished run was kept, not redone


def test_tiny_run_writes_json_table_and_png_whose_cells_are_the_runs(interrupted_then_resumed):
    out = interrupted_then_resumed[0]
    results = json.loads((out / "results.json").read_text())
    by_row = {r["row"]: r for r in results["runs"]}
    remine = by_row["remine/nwj+reg"]
    assert remine["config"]["loss"]["estimator"] == "nwj"  # the resolved config of the run
    assert remine["config"]["loss"]["reg_weight"] > 0
    assert remine["config"]["trainer"]["epochs"] == 1 and remine["config"]["seed"] == 0
    for r in results["runs"]:
        assert r["status"] in ("ok", "collapsed", "diverged"), r.get("error")
        for key in ("linear_top1", "knn20_top1", "knn200_top1"):
            assert 0.0 <= r["metrics"][key] <= 1.0
        assert 1.0 <= r["diagnostics"]["features"]["effective_rank"] <= 64
        assert r["wall_time_s"] > 0
    assert "embeddings" not in by_row["random-init"]["diagnostics"]
    emb = by_row["infonce"]["diagnostics"]["embeddings"]
    assert 1.0 <= emb["effective_rank"] <= emb["covariance_rank"] + 1e-6 <= 32 + 1e-6
    # the MI estimate is the mean of the last quarter of the logged train/mi_estimate values
    points = by_row["infonce"]["curves"]["train/mi_estimate"]
    tail = [v for _, v in points[-max(1, len(points) // 4) :]]
    assert by_row["infonce"]["metrics"]["mi_estimate"] == pytest.approx(np.mean(tail))
    # InfoNCE's estimate is the bound log(2N - 1) - loss: below log(2 * 64 - 1)
    assert by_row["infonce"]["metrics"]["mi_estimate"] < math.log(127)

    table = (out / "table.md").read_text()
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (.*) \|$", table, re.M)}
    assert set(lines) == {"random-init", "infonce", "remine/nwj+reg"}
    for name, r in by_row.items():
        cells = [c.strip("* ") for c in lines[name].split(" | ")]
        assert cells[0] == f"{100 * r['metrics']['linear_top1']:.1f}"
        assert cells[2] == f"{100 * r['metrics']['knn200_top1']:.1f}"
        assert cells[4] == f"{r['diagnostics']['features']['effective_rank']:.1f}"
    png = (out / "rank_vs_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def _run(row, seed, top1, rank, status="ok"):
    return {
        "row": row,
        "seed": seed,
        "status": status,
        "metrics": {"linear_top1": top1, "knn20_top1": top1, "knn200_top1": top1},
        "diagnostics": {"features": {"effective_rank": rank, "covariance_rank": 8.0}},
    }


def test_table_is_mean_and_sample_std_over_seeds_best_in_bold_diverged_left_out():
    runs = [_run("a", 0, 0.90, 3.0), _run("a", 1, 0.80, 5.0), _run("a", 2, 0.70, 4.0)]
    runs += [_run("b", 0, 0.95, 1.0), _run("b", 1, 0.10, 1.0, status="diverged")]
    results = {"settings": {"rows": ["a", "b"]}, "runs": runs}
    table = report.markdown_table(results)
    # a: mean 80.0, sample std sqrt(((10)^2 + 0 + (10)^2) / 2) = 10.0; rank 4.0 +- 1.0
    assert "| `a` | 80.0 ± 10.0 | 80.0 ± 10.0 | 80.0 ± 10.0 | - | 4.0 ± 1.0 | 8.0 ± 0.0 |" in table
    # b: the diverged run is not averaged; its single run has no std; the best mean is bold
    assert "| `b` | **95.0** | **95.0** | **95.0** | - | 1.0 | 8.0 |" in table
    assert table.rstrip().endswith("| 1 ok, 1 diverged |")
    assert "±" not in report.markdown_table(results, means_only=True)


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match="unknown --methods entry 'simclr'"):
        bench.main(["--methods", "simclr", "--out", str(tmp_path / "x")])
    with pytest.raises(UserError, match="remine/mine\\+reg: loss.reg_weight is 0"):
        bench.main(
            ["--methods", "remine/mine+reg", "--out", str(tmp_path / "x")] + ["loss.reg_weight=0"]
        )
    assert not (tmp_path / "x").exists()
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "results.json").write_text("{}")
    with pytest.raises(UserError, match="pass --resume"):
        bench.main(["--methods", "infonce", "--out", str(tmp_path / "y")])


def test_a_diverged_estimate_prints_in_scientific_notation_and_a_normal_one_fixed():
    assert report._cell(-2.668e11, 4.622e11, 2, False, False) == "-2.67e+11 ± 4.62e+11"
    assert report._cell(95.53, 0.41, 1, True, False) == "**95.5 ± 0.4**"
    assert report._cell(0.47, 0.13, 2, False, True) == "0.47"


def test_the_committed_table_and_benchmarks_md_quote_the_committed_json():
    root = Path(__file__).resolve().parents[2]
    results = json.loads((root / "benchmarks/results/ssl_methods.json").read_text())
    table = report.markdown_table(results)
    assert table in (root / "benchmarks/results/ssl_methods.md").read_text()
    assert table.strip() in (root / "BENCHMARKS.md").read_text()
