"""Running train.py / eval_linear.py as a user would: a subprocess in the repo root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A tiny but real ResNet (lightly's CIFAR ResNet-9 at 1/8 width) keeps each epoch ~1-2 s.
TINY = [
    "--backbone",
    "lightly:resnet-9",
    "backbone.width=0.125",
    "projector.hidden_dim=64",
    "projector.output_dim=32",
    "--num-workers",
    "0",
    "--batch-size",
    "64",
    "trainer.deterministic=true",
    "diagnostics.num_samples=64",
]


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train(run_dir: Path, name: str, *args: str, timeout: float = 300):
    return run_script(
        "train.py",
        "--data",
        "digits",
        "--run-dir",
        str(run_dir),
        "--name",
        name,
        *TINY,
        *args,
        timeout=timeout,
    )


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under a directory with its size and mtime, to prove nothing was touched."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
