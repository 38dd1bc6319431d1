"""benchmarks/versus.py in a tiny configuration: infossl's train.py path and the lightly module
each run in their own process for two interleaved rounds; solo-learn, given an interpreter that
does not exist, is reported missing with the reason and the others go on. The ratios are
checked against the per-round numbers they come from."""

import json
import statistics

import pytest

from benchmarks import versus

ROUNDS, REPEATS = 2, 2
TINY = [
    "--tiny",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--threads",
    "1",
    "--warmup",
    "1",
    "--steps",
    "2",
    "--repeats",
    str(REPEATS),
    "--rounds",
    str(ROUNDS),
]


def test_tiny_run_reports_per_round_numbers_ratios_and_the_missing_framework(tmp_path, capsys):
    out = tmp_path / "versus.json"
    no_python = tmp_path / "no-such-env" / "bin" / "python"
    (tmp_path / "solo-learn").mkdir()
    (tmp_path / "solo-learn" / "main_pretrain.py").write_text("")
    source = ["--solo-root", str(tmp_path / "solo-learn")]
    argv = [*TINY, "--solo-python", str(no_python), *source, "--out", str(out)]
    assert versus.main(argv) == 0
    result = json.loads(out.read_text())

    solo = result["frameworks"]["solo"]
    assert solo["status"] == "missing"
    assert solo["reason"] == f"--solo-python {no_python} does not exist"
    assert "solo" not in result["rounds"]
    assert result["config"]["order"] == ["infossl", "lightly"]

    for name in ("infossl", "lightly"):
        runs = result["rounds"][name]
        assert [r["round"] for r in runs] == list(range(ROUNDS))
        for r in runs:
            assert r["status"] == "ok", r
            assert len(r["windows"]) == REPEATS
            assert r["images_per_s"] == pytest.approx(statistics.median(r["windows"]))
            assert 0 < r["first_step_s"] < r["wall_s"]
            assert r["peak_rss_mib"] > 100  # torch alone takes more
            assert r["torch_threads"] == 1
            assert 0 <= r["load_avg_1m"] < 1000  # os.getloadavg as the run started
        summary = result["frameworks"][name]
        per_round = [r["images_per_s"] for r in runs]
        assert summary["images_per_s"]["median"] == pytest.approx(statistics.median(per_round))
        assert summary["images_per_s"]["min"] == pytest.approx(min(per_round))
        assert summary["peak_rss_mib"] == pytest.approx(max(r["peak_rss_mib"] for r in runs))

    # --tiny: both build lightly's width-1/8 ResNet-9, so their backbones do the same work.
    import lightly
    import torch

    found = result["frameworks"]
    assert found["infossl"]["backbone_gflop_per_image"] > 0
    assert found["lightly"]["backbone_gflop_per_image"] == pytest.approx(
        found["infossl"]["backbone_gflop_per_image"]
    )
    assert found["lightly"]["versions"]["lightly"] == lightly.__version__
    assert torch.__version__.startswith(found["infossl"]["versions"]["torch"])  # 2.x+cu

    ours = [r["images_per_s"] for r in result["rounds"]["infossl"]]
    theirs = [r["images_per_s"] for r in result["rounds"]["lightly"]]
    expected = [t / o for t, o in zip(theirs, ours, strict=True)]
    ratio = result["frameworks"]["lightly"]["ratio_to_infossl"]
    assert ratio["per_round"] == pytest.approx(expected)
    assert ratio["median"] == pytest.approx(statistics.median(expected))
    assert (ratio["min"], ratio["max"]) == pytest.approx((min(expected), max(expected)))
    assert result["frameworks"]["infossl"]["ratio_to_infossl"]["per_round"] == [1.0] * ROUNDS

    table = out.with_suffix(".md").read_text()
    assert f"| solo-learn | missing: --solo-python {no_python} does not exist |" in table
    gflop = found["lightly"]["backbone_gflop_per_image"]
    assert f"| {gflop:.3f} |" in table
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "round 1 lightly:" in capsys.readouterr().out


def test_ratio_pairs_rounds_and_skips_failed_ones():
    def ok(ips):
        return {"status": "ok", "images_per_s": ips, "first_step_s": 1.0, "peak_rss_mib": 9}

    failed = {"status": "failed", "reason": "boom"}
    found = versus.aggregate(
        {"infossl": [ok(10.0), ok(20.0), ok(40.0)], "lightly": [ok(5.0), failed, ok(60.0)]}
    )
    ratio = found["lightly"]["ratio_to_infossl"]
    assert ratio["per_round"] == [0.5, 1.5]
    assert (ratio["median"], ratio["min"], ratio["max"]) == (1.0, 0.5, 1.5)
    assert found["lightly"]["rounds"] == 2
    assert versus.aggregate({"infossl": [failed]})["infossl"] == {
        "status": "failed",
        "reason": "boom",
    }


def test_bad_frameworks_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        versus.main(["--frameworks", "lightly,mmselfsup", "--out", str(tmp_path / "x.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--frameworks" in err[0]


def test_no_warmup_is_refused(tmp_path, capsys):
    # The first timed window starts at the end of a warm-up step, never at process start.
    with pytest.raises(SystemExit) as exit_:
        versus.main(["--warmup", "0", "--out", str(tmp_path / "x.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "versus.py: --warmup, --steps, --repeats, --rounds and --threads must be at least 1"
    ]
    assert not (tmp_path / "x.json").exists()
