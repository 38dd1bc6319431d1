"""benchmarks/gpu_check.sh on a machine without CUDA: the dry run reports it, skips the GPU parts
(tests/gpu skips every test with the reason), still writes its summary and exits 0; without
--dry-run the same machine fails the check, and a part that no longer fits the time budget is
skipped and says so. The summary's GPU figures are read from throughput.py's JSON."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import _gpu_check_summary as S

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA machine runs the real check, not the dry one"
)


def _check(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    environ.pop("OUT", None)
    environ["GPU_CHECK_WHEELS"] = str(out.parent / "no-wheels")  # CI has no wheel folder
    return subprocess.run(
        ["bash", str(SCRIPT), *args, str(out)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _benchmarks_cuda_commands() -> list[list[str]]:
    """The throughput.py --device cuda commands of BENCHMARKS.md, continuation lines joined."""
    text = (ROOT / "BENCHMARKS.md").read_text().replace("\\\n", " ")
    found = [
        shlex.split(line.strip())
        for line in text.splitlines()
        if line.strip().startswith("python benchmarks/throughput.py --device cuda")
    ]
    return list({tuple(c): c for c in found}.values())


@needs_no_cuda
def test_dry_run_without_cuda_skips_the_gpu_parts_and_writes_the_summary(tmp_path):
    out = tmp_path / "out"
    result = _check(out, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    status = {p["part"]: p["status"] for p in summary["parts"]}
    commands = _benchmarks_cuda_commands()
    names = [Path(c[c.index("--out") + 1]).stem for c in commands]
    assert len(commands) >= 2 and "throughput_cuda" in names
    assert status == {
        "environment": "passed",
        "cuda": "skipped",
        "packages": "skipped",
        "tests/gpu": "skipped",
        **{name: "skipped" for name in names},
    }
    assert summary["ok"] is True
    # Every GPU test was collected and skipped, with the reason, none ran.
    tests = summary["tests_gpu"]
    assert tests["skipped"] == tests["tests"] >= 40 and tests["passed"] == 0
    assert tests["failures"] == tests["errors"] == 0
    assert any("torch.cuda.is_available() is False" in r for r in tests["skip_reasons"])
    log = (out / "gpu_check.log").read_text()
    assert "no CUDA device" in log and "no wheel folder" in log
    # The throughput commands are BENCHMARKS.md's, with --out moved into the output folder.
    for command, name in zip(commands, names, strict=True):
        moved = [*command[1:]]
        moved[moved.index("--out") + 1] = str(out / f"{name}.json")
        assert f"SKIPPED (no CUDA device): {shlex.join([sys.executable, *moved])}" in log
    assert "| tests/gpu | skipped |" in (out / "summary.md").read_text()
    # What comes back from a GPU machine: one folder, at most 8 files.
    assert len(list(out.iterdir())) <= 8 and all(p.is_file() for p in out.iterdir())


@needs_no_cuda
def test_without_dry_run_no_cuda_fails_and_parts_past_the_budget_are_skipped(tmp_path):
    out = tmp_path / "out"
    result = _check(out, GPU_CHECK_BUDGET_S="20")
    assert result.returncode == 1
    parts = {p["part"]: p for p in json.loads((out / "summary.json").read_text())["parts"]}
    assert parts["cuda"]["status"] == "failed"
    assert "torch sees no CUDA device" in parts["cuda"]["note"]
    # 20 s minus the environment's time minus 15 s kept for the summary: tests/gpu (30 s at
    # least) no longer fits.
    assert parts["tests/gpu"]["status"] == "skipped"
    assert re.fullmatch(r"no time left \(-?\d+s\)", parts["tests/gpu"]["note"])
    assert "overall: FAILED" in (out / "summary.md").read_text()


def test_unknown_option_and_missing_output_folder_are_one_line_errors(tmp_path):
    for args, needle in ((["--fast", str(tmp_path)], "unknown option --fast"), ([], "output")):
        environ = {k: v for k, v in os.environ.items() if k != "OUT"}
        result = subprocess.run(
            ["bash", str(SCRIPT), *args], cwd=ROOT, env=environ, capture_output=True, text=True
        )
        assert result.returncode == 2 and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_summary_reads_the_gpu_figures_from_throughput_json(tmp_path):
    # A real throughput.py JSON (the CPU run BENCHMARKS.md quotes), as a CUDA run would leave it.
    source = json.loads((ROOT / "benchmarks" / "results" / "throughput_cpu.json").read_text())
    (tmp_path / "throughput_cuda.json").write_text(json.dumps(source))
    (tmp_path / "parts.tsv").write_text(
        "tests/gpu\tpassed\t0\t95\t\nthroughput_cuda\tpassed\t0\t80\t\n"
    )
    (tmp_path / "tests_gpu.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="0" skipped="1">'
        '<testcase name="a"><skipped message="why"/></testcase></testsuite></testsuites>'
    )
    assert S.main([str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    rates = {k: v["median"] for k, v in source["images_per_s"].items()}
    f = summary["throughput"]["throughput_cuda.json"]
    assert f["images_per_s"] == rates
    ratio = rates["data/gpu_augment"] / rates["data/cpu_augment"]
    assert f["gpu_over_cpu_augment"] == pytest.approx(ratio) and not f["augment_target_met"]
    overhead = 100 * (rates["step/manual"] / rates["step/lightning"] - 1)
    assert f["framework_overhead_pct"] == pytest.approx(overhead) and f["overhead_target_met"]
    peak = source["peak"]
    manual = peak["step_flops"] * rates["step/manual"] / 32 / peak["matmul_flops_per_s"]
    assert f["fraction_of_peak"]["step/manual"] == pytest.approx(manual)
    assert f["matmul_tflops"] == pytest.approx(peak["matmul_flops_per_s"] / 1e12)
    assert summary["tests_gpu"] == {
        "tests": 5,
        "failures": 1,
        "errors": 0,
        "skipped": 1,
        "passed": 3,
        "skip_reasons": ["why"],
    }
    text = (tmp_path / "summary.md").read_text()
    assert f"GPU / CPU augmentation (data pipeline): {ratio:.2f}x, target >= 3x: NOT met" in text
    assert "tests/gpu: 3 passed, 1 failed, 0 errors, 1 skipped" in text
