"""``--help`` and the input errors found before any work answer without importing the heavy
stack (torch, PyTorch Lightning, timm, lightly): each case runs in a fresh interpreter, which
then reports the exit code and which of those modules it loaded."""

from __future__ import annotations

import json
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
