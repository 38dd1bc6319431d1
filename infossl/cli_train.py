"""Pretrain a backbone with a mutual-information objective.

python train.py --method infonce --data digits --epochs 20
python train.py --method corinfomax --data cifar10 --gpus 8 --resume auto
python train.py --method infonce --data digits optimizer.lr=0.3 loss.temperature=0.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from infossl.cli import ArgumentParser, run_cli

DESCRIPTION = __doc__


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", help="infonce, corinfomax, flo, remine, dml-ce, ...")
    p.add_argument("--config", help="YAML file merged over the method x dataset defaults")
    p.add_argument("--data", help="digits, cifar10, cifar100, stl10 or folder")
    p.add_argument("--data-dir", help="where the dataset lies (config data.dir)")
    p.add_argument(
        "--download",
        action="store_true",
        default=None,
        help="download the dataset if missing (torchvision datasets)",
    )
    p.add_argument("--backbone", help="resnet18|34|50, timm:NAME or lightly:resnet-N")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per device")
    p.add_argument("--num-workers", type=int, help="data loading workers per device")
    p.add_argument("--gpus", type=int, help="N > 0: N CUDA GPUs (DDP when N > 1)")
    p.add_argument("--accelerator", help="auto, cpu or gpu")
    p.add_argument("--devices", type=int, help="processes per node (DDP when > 1)")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--precision", help="32, 16-mixed or bf16-mixed")
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the backbone (trainer.compile)",
    )
    p.add_argument("--augment-on", help="cpu, gpu or auto: where the views are made")
    p.add_argument("--resume", help="PATH to a checkpoint, or 'auto' for this run's newest")
    p.add_argument("--run-dir", default="runs", help="parent of run directories (default: runs)")
    p.add_argument("--name", help="run name (default: <method>-<data>)")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any config entry, e.g. optimizer.lr=0.3",
    )
    return p


FLAG_TO_KEY = {
    "data_dir": "data.dir",
    "download": "data.download",
    "backbone": "backbone.name",
    "epochs": "trainer.epochs",
    "batch_size": "data.batch_size",
    "num_workers": "data.num_workers",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "precision": "trainer.precision",
    "compile": "trainer.compile",
    "augment_on": "data.augment_on",
    "seed": "seed",
}


def flag_values(args) -> dict:
    """Only the flags the user gave, as a nested config dict."""
    values: dict = {}
    for flag, key in FLAG_TO_KEY.items():
        value = getattr(args, flag)
        if value is not None:
            section, _, leaf = key.rpartition(".")
            (values.setdefault(section, {}) if section else values)[leaf] = value
    return values


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from infossl.training import TrainRequest, run_training

    started = time.time()
    result = run_training(
        TrainRequest(
            method=args.method,
            data=args.data,
            config=args.config,
            flags=flag_values(args),
            overrides=args.overrides,
            gpus=args.gpus,
            resume=args.resume,
            run_root=Path(args.run_dir),
            name=args.name,
        )
    )
    if result is not None:
        result["wall_time_s"] = round(time.time() - started, 1)
        result["command"] = " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])])
        path = result.pop("run_dir") / "metrics.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def run() -> int:
    """The console script (``infossl-train``): bad input is one line on stderr, exit 2."""
    return run_cli(main)
