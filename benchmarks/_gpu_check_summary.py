"""The summary of ``benchmarks/gpu_check.sh``: summary.md and summary.json.

What each part did (``parts.tsv``, one line per part: name, status, exit code, seconds, note),
the tests' counts (pytest's JUnit XML) and the GPU figures BENCHMARKS.md asks for, read from
throughput.py's JSON files. Writes ``summary.md`` and ``summary.json`` into the output folder.

    python benchmarks/_gpu_check_summary.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

AUGMENT_TARGET = 3.0  # batched GPU augmentation / CPU workers, data pipeline alone
OVERHEAD_TARGET_PCT = 5.0  # hand-written step / Lightning step - 1


def read_parts(path: Path) -> list[dict]:
    parts = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                name, status, rc, seconds, note = (line.split("\t") + [""] * 5)[:5]
                parts.append(
                    {"part": name, "status": status, "rc": rc, "seconds": seconds, "note": note}
                )
    return parts


def junit_counts(path: Path) -> dict | None:
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    reasons = sorted(
        {s.get("message", "") for case in root.iter("testcase") for s in case.iter("skipped")}
    )
    counts["skip_reasons"] = [r for r in reasons if r]
    return counts


def figures(result: dict) -> dict:
    """The GPU figures of one throughput.py JSON (whatever parts it holds)."""
    rates = result.get("images_per_s", {})
    out: dict = {
        "device": result.get("machine", {}).get("gpu") or result.get("config", {}).get("device"),
        "images_per_s": {name: r["median"] for name, r in rates.items()},
    }
    if "gpu_over_cpu_augment" in result:
        ratio = result["gpu_over_cpu_augment"]
        out["gpu_over_cpu_augment"] = ratio
        out["augment_target_met"] = ratio >= AUGMENT_TARGET
    if "framework_overhead_pct" in result:
        pct = result["framework_overhead_pct"]
        out["framework_overhead_pct"] = pct
        out["overhead_target_met"] = pct <= OVERHEAD_TARGET_PCT
    peak = result.get("peak", {})
    if "matmul_flops_per_s" in peak:
        out["matmul_tflops"] = peak["matmul_flops_per_s"] / 1e12
        out["matmul_dtype"] = peak["dtype"]
        out["fraction_of_peak"] = {
            k.removesuffix("_fraction_of_peak"): v
            for k, v in peak.items()
            if k.endswith("_fraction_of_peak")
        }
    if "variant_speedup" in result:
        out["variant_speedup"] = {k: v["median"] for k, v in result["variant_speedup"].items()}
    return out


def summarize(folder: Path) -> dict:
    summary = {
        "parts": read_parts(folder / "parts.tsv"),
        "tests_gpu": junit_counts(folder / "tests_gpu.xml"),
        "throughput": {
            p.name: figures(json.loads(p.read_text()))
            for p in sorted(folder.glob("throughput*.json"))
        },
    }
    summary["ok"] = all(p["status"] in ("passed", "skipped") for p in summary["parts"])
    return summary


def markdown(summary: dict) -> str:
    lines = ["# GPU check", "", "| part | status | exit | seconds | note |"]
    lines.append("|---|---|---|---|---|")
    lines += [
        f"| {p['part']} | {p['status']} | {p['rc']} | {p['seconds']} | {p['note']} |"
        for p in summary["parts"]
    ]
    tests = summary["tests_gpu"]
    if tests:
        lines += [
            "",
            f"tests/gpu: {tests['passed']} passed, {tests['failures']} failed, "
            f"{tests['errors']} errors, {tests['skipped']} skipped",
        ]
        lines += [f"- skipped: {r}" for r in tests["skip_reasons"]]
    for name, f in summary["throughput"].items():
        lines += ["", f"## {name} ({f['device']})", "", "| measurement | images/s |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in f["images_per_s"].items()]
        lines.append("")
        if "gpu_over_cpu_augment" in f:
            met = "met" if f["augment_target_met"] else "NOT met"
            lines.append(
                f"- GPU / CPU augmentation (data pipeline): {f['gpu_over_cpu_augment']:.2f}x, "
                f"target >= {AUGMENT_TARGET:g}x: {met}"
            )
        if "framework_overhead_pct" in f:
            met = "met" if f["overhead_target_met"] else "NOT met"
            lines.append(
                f"- framework overhead: {f['framework_overhead_pct']:+.1f}%, "
                f"target <= {OVERHEAD_TARGET_PCT:g}%: {met}"
            )
        if "matmul_tflops" in f:
            lines.append(f"- measured {f['matmul_dtype']} matmul: {f['matmul_tflops']:.1f} TFLOP/s")
            lines += [
                f"- {k} reaches {100 * v:.1f}% of it" for k, v in f["fraction_of_peak"].items()
            ]
        lines += [f"- {k} / default: {v:.3f}x" for k, v in f.get("variant_speedup", {}).items()]
    lines += ["", "overall: " + ("ok" if summary["ok"] else "FAILED")]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    summary = summarize(folder)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    (folder / "summary.md").write_text(text)
    print(text, end="")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
