"""How long the command line takes to answer ``--help`` and a one-line input error.

Each case runs ``train.py`` / ``eval_linear.py`` as a user would (a fresh subprocess in the repo
root) several times and records the wall time and the CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``) of each run. The last case imports the heavy stack (torch,
PyTorch Lightning, timm, lightly) and nothing else: what every input error cost while the
training module imported Lightning before it resolved the config. Writes
``<out>/cli_startup.{json,md,png}``.

    python benchmarks/cli_startup.py --repeats 5 --load "$(uptime)"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "cli_startup"

# (name, argv after the interpreter, expected exit code)
CASES = [
    ("train.py --help", ["train.py", "--help"], 0),
    ("train.py unknown method", ["train.py", "--method", "simclrr", "--data", "digits"], 2),
    (
        "train.py unknown config key",
        ["train.py", "--method", "infonce", "--data", "digits", "optimizer.lrr=0.3"],
        2,
    ),
    (
        "train.py wrong type",
        ["train.py", "--method", "infonce", "--data", "digits", "optimizer.lr=abc"],
        2,
    ),
    ("eval_linear.py --help", ["eval_linear.py", "--help"], 0),
    ("eval_linear.py bad flag value", ["eval_linear.py", "--ckpt", "x.ckpt", "--epochs", "0"], 2),
    (
        "import torch + Lightning + timm + lightly",
        ["-c", "import torch, pytorch_lightning, timm, lightly"],
        0,
    ),
]


def _time_once(argv: list[str], expected: int) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expected:
        raise SystemExit(f"{argv}: exit {done.returncode}, expected {expected}: {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--load", default="", help="the machine's load (uptime), for the record")
    args = parser.parse_args()

    results = {}
    for name, argv, expected in CASES:
        _time_once(argv, expected)  # warm the file cache: the first run reads from disk
        runs = [_time_once(argv, expected) for _ in range(args.repeats)]
        results[name] = {
            "argv": argv,
            "median_wall_s": statistics.median(w for w, _ in runs),
            "median_cpu_s": statistics.median(c for _, c in runs),
            "wall_s": [round(w, 4) for w, _ in runs],
            "cpu_s": [round(c, 4) for _, c in runs],
        }
        print(f"{name:42s} wall {results[name]['median_wall_s']:.3f} s")
    record = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "load": args.load,
        "repeats": args.repeats,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli_startup.json").write_text(json.dumps(record, indent=1) + "\n")
    rows = ["| command | median wall (s) | median CPU (s) | runs, wall (s) |", "|---|---|---|---|"]
    for name, r in results.items():
        runs = ", ".join(f"{w:.2f}" for w in r["wall_s"])
        rows.append(f"| {name} | {r['median_wall_s']:.3f} | {r['median_cpu_s']:.3f} | {runs} |")
    (args.out / "cli_startup.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(names, [results[n]["median_wall_s"] for n in names], color="#4a7")
    for i, n in enumerate(names):
        ax.scatter(results[n]["wall_s"], [i] * len(results[n]["wall_s"]), color="k", s=8)
    ax.axvline(1.0, color="#c44", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("wall time per run (s, log scale); dashed: 1 s")
    ax.invert_yaxis()
    ax.set_title("Command-line start-up (fresh process each run)")
    fig.tight_layout()
    fig.savefig(args.out / "cli_startup.png", dpi=120)


if __name__ == "__main__":
    main()
