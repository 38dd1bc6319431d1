"""Multi-node launch through torchrun: two "nodes" of one process each on 127.0.0.1 (gloo) must
train exactly what one node with two processes trains, and only global rank 0 writes.

Each node runs in its own working directory with the same relative ``--run-dir``, so a file
written by rank 1 would show up in its directory (on a cluster both would be one shared path).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import ROOT, TINY, tensorboard_scalars

pytestmark = pytest.mark.slow

RUN = [
    "--method", "infonce", "--data", "digits", "--epochs", "1", "--run-dir", "runs",
    "--name", "scale", *TINY, "--batch-size", "32", "--accelerator", "cpu",
    "data.image_size=8", "data.train_fraction=0.25", "trainer.log_every_n_steps=1",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _two_nodes(tmp: Path) -> list[Path]:
    port = _free_port()
    nodes = []
    for node_rank in (0, 1):
        cwd = tmp / f"node{node_rank}"
        cwd.mkdir()
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--nproc-per-node", "1", "--node-rank", str(node_rank), "--master-addr", "127.0.0.1",
            "--master-port", str(port), str(ROOT / "train.py"), *RUN,
            "--devices", "1", "--num-nodes", "2",
        ]  # fmt: skip
        nodes.append((cwd, subprocess.Popen(command, cwd=cwd, env=_env(), **_pipes())))
    for cwd, process in nodes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, (cwd.name, err[-3000:])
    return [cwd for cwd, _ in nodes]


def _pipes() -> dict:
    return {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def _one_node_two_processes(tmp: Path) -> Path:
    cwd = tmp / "single"
    cwd.mkdir()
    command = [sys.executable, str(ROOT / "train.py"), *RUN, "--devices", "2"]
    result = subprocess.run(command, cwd=cwd, env=_env(), timeout=240, **_pipes())
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd


def test_two_nodes_through_torchrun_equal_one_node_with_two_processes(tmp_path):
    node0, node1 = _two_nodes(tmp_path)
    single = _one_node_two_processes(tmp_path)

    assert list(node1.iterdir()) == []  # global rank 1 wrote nothing
    multi_run, single_run = node0 / "runs" / "scale", single / "runs" / "scale"
    multi = json.loads((multi_run / "metrics.json").read_text())
    reference = json.loads((single_run / "metrics.json").read_text())
    assert multi["devices"] == reference["devices"] == 2
    # 359 digits (a quarter of 1,437), 180 per process, batches of 32 with the last one dropped.
    assert multi["global_step"] == reference["global_step"] == 180 // 32

    losses = tensorboard_scalars(multi_run)["train/loss"]
    expected = tensorboard_scalars(single_run)["train/loss"]
    assert [step for step, _ in losses] == [step for step, _ in expected]
    assert len(losses) == 180 // 32
    for (step, value), (_, ref) in zip(losses, expected, strict=True):
        assert value == pytest.approx(ref, rel=1e-5, abs=1e-6), step

    weights = torch.load(multi_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    ref_weights = torch.load(single_run / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in ref_weights["state_dict"].items():
        torch.testing.assert_close(weights[key], value, atol=1e-5, rtol=1e-5, msg=key)
