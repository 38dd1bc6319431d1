"""``pip install .`` of the checkout into a fresh virtual environment, then the console scripts
from a directory outside the checkout: the installed copy must find its configs (package data)
and train.

The fresh environment inherits the running interpreter's libraries through a ``.pth`` line (torch
and Lightning are not downloaded again); a plain path line, unlike ``site.addsitedir``, does not
run that environment's ``.pth`` files, so an editable install of this checkout there stays
invisible and ``import infossl`` can only find the copy pip just installed.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from train_helpers import ROOT, TINY

pytestmark = pytest.mark.slow


def _fresh_venv(tmp: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    inherited = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (Path(purelib) / "_inherited.pth").write_text("\n".join(dict.fromkeys(inherited)) + "\n")
    return venv


def _copy_of_checkout(tmp: Path) -> Path:
    # What an sdist holds; building from a copy keeps build/ and *.egg-info out of the checkout.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "infossl", src / "infossl", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def test_pip_install_gives_console_scripts_that_train_outside_the_checkout(tmp_path):
    venv = _fresh_venv(tmp_path)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", str(_copy_of_checkout(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)

    def run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(cmd), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout
        )

    where = run(python, "-c", "import infossl.config as C; print(C.CONFIG_DIR)")
    assert where.returncode == 0, where.stderr[-3000:]
    config_dir = Path(where.stdout.strip())
    assert config_dir.is_relative_to(venv), config_dir  # the installed copy, not the checkout
    assert (config_dir / "base.yaml").is_file()
    assert (config_dir / "papers" / "corinfomax_imagenet100.yaml").is_file()

    usage = run(str(venv / "bin" / "infossl-train"), "--help")
    assert usage.returncode == 0, usage.stderr[-3000:]
    assert usage.stdout.startswith("usage: infossl-train")
    assert "--method" in usage.stdout
    usage = run(str(venv / "bin" / "infossl-eval"), "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: infossl-eval")

    # A user's own --config merges over the shipped defaults.
    own = elsewhere / "mine.yaml"
    own.write_text("optimizer:\n  lr: 0.123\n")
    trained = run(
        str(venv / "bin" / "infossl-train"),
        "--method", "infonce", "--data", "digits", "--epochs", "1", "--config", str(own),
        "--run-dir", "runs", "--name", "tiny", *TINY, "--batch-size", "128",
        "data.image_size=8", "data.train_fraction=0.5",
        timeout=180,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_dir = elsewhere / "runs" / "tiny"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 1,437 digits training images, half of them (718), batches of 128 with the last one dropped.
    assert metrics["global_step"] == 718 // 128
    assert metrics["command"].startswith("infossl-train ")
    assert "lr: 0.123" in (run_dir / "config.yaml").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (ROOT / "runs" / "tiny").exists()
