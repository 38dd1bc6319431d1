"""``--help`` and the input errors found before any work answer without importing the heavy
stack (torch, PyTorch Lightning, timm, lightly): each case runs in a fresh interpreter, which
then reports the exit code and which of those modules it loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from train_helpers import ROOT

HEAVY = ("torch", "pytorch_lightning", "lightning_fabric", "timm", "lightly", "torchvision")

PROBE = """
import json, sys
import {module}
sys.argv = ["{module}.py", *json.loads(sys.argv[1])]
try:
    code = {module}.run()
except SystemExit as exit:
    code = exit.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def probe(module: str, *args: str) -> tuple[int, list[str], list[str]]:
    """(exit code, heavy modules loaded, the other stderr lines) of ``module``'s command."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY), json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    report = json.loads(lines[-1])
    return report["code"], report["heavy"], lines[:-1]


@pytest.mark.parametrize("module", ["train", "eval_linear"])
def test_help_imports_no_heavy_module(module):
    code, heavy, _ = probe(module, "--help")
    assert code == 0 and heavy == []


TRAIN = ("--method", "infonce", "--data", "digits")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--method", "simclrr"), "unknown method 'simclrr'"),
        ((*TRAIN, "optimizer.lr"), "malformed override 'optimizer.lr'"),
        ((*TRAIN, "--config", "no-such.yaml"), "config file no-such.yaml does not exist"),
        ((*TRAIN, "optimizer.lrr=0.3"), "unknown config key 'optimizer.lrr'"),
        ((*TRAIN, "optimizer.lr=abc"), "optimizer.lr='abc' is not valid: it must be a number > 0"),
        ((*TRAIN, "--epochs", "x"), "argument --epochs: invalid int value: 'x'"),
    ],
)
def test_train_input_errors_answer_before_torch(args, needle):
    code, heavy, lines = probe("train", *args)
    assert code == 2 and heavy == []
    assert len(lines) == 1 and needle in lines[0], lines


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--ckpt", "x.ckpt", "--epochs", "0"), "epochs=0 is not valid"),
        (("--ckpt", "x.ckpt", "--lr", "nan"), "lr=nan is not valid"),
        (("--ckpt", "no-such.ckpt"), "checkpoint no-such.ckpt does not exist"),
    ],
)
def test_eval_input_errors_answer_before_torch(args, needle):
    code, heavy, lines = probe("eval_linear", *args)
    assert code == 2 and heavy == []
    assert len(lines) == 1 and needle in lines[0], lines


def test_help_names_the_defaults_a_run_uses():
    import yaml

    from infossl.cli_train import build_parser

    text = " ".join(build_parser().format_help().split())  # argparse wraps lines
    base = yaml.safe_load((ROOT / "infossl" / "configs" / "base.yaml").read_text())
    assert base["data"]["name"] is None  # no dataset in base.yaml: train.py picks cifar10
    assert "(default: cifar10; with --quick: digits)" in text
    assert "Without --data a run trains on cifar10" in text
    assert base["trainer"]["epochs"] == 100 and "[trainer.epochs: 100]" in text
    assert "[data.batch_size: 256]" in text and "[backbone.name: resnet18]" in text
    assert "[data.num_workers: auto]" in text and "[seed: 0]" in text
    assert "(default: runs)" in text


def test_quick_resolves_a_small_digits_run_in_its_own_directory(tmp_path):
    from infossl.training import TrainRequest, _resolve

    run = _resolve(TrainRequest(method="infonce", data=None, quick=True, run_root=tmp_path))
    cfg = run.cfg
    assert run.run_dir == tmp_path / "infonce-digits-quick"
    assert cfg.data.name == "digits" and cfg.data.image_size == 16
    assert (cfg.backbone.name, cfg.backbone.width) == ("lightly:resnet-9", 0.25)
    assert cfg.trainer.epochs == 5 and cfg.optimizer.warmup_epochs == 1
    assert cfg.loss.temperature == 0.2  # the method x data preset is kept beneath quick.yaml
    # Flags still win over the preset.
    run = _resolve(
        TrainRequest(method="flo", data=None, quick=True, flags={"trainer": {"epochs": 2}})
    )
    assert run.cfg.trainer.epochs == 2 and run.cfg.loss.temperature == 0.3


def test_eval_workers_default_to_the_cores_of_this_process(monkeypatch):
    from types import SimpleNamespace

    from infossl.eval import offline
    from infossl.eval.settings import eval_settings

    flags = {k: None for k in ("epochs", "batch_size", "lr", "augment", "num_workers")}
    args = SimpleNamespace(**flags, precision=None, seed=None, recall_k=[1], gpus=None)
    assert eval_settings(args)["num_workers"] == "auto"
    # Lightning's suggestion for one process: the cores it may use minus one (2 cores -> 1).
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert offline._eval_settings(args)["num_workers"] == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert offline._eval_settings(args)["num_workers"] == 8  # at most MAX_AUTO_WORKERS
    assert (
        offline._eval_settings(SimpleNamespace(**{**vars(args), "num_workers": 3}))["num_workers"]
        == 3
    )
