"""Pretrain a backbone with a mutual-information objective.

python train.py --method infonce --quick             # the 1-minute demo on digits (CPU)
python train.py --method infonce --data digits --epochs 20
python train.py --method corinfomax --data cifar10 --gpus 8 --resume auto
python train.py --method infonce --data digits optimizer.lr=0.3 loss.temperature=0.1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from infossl.cli import ArgumentParser, run_cli

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # infossl.config.CONFIG_DIR

DESCRIPTION = __doc__
EPILOG = """\
Without --data a run trains on cifar10 (--quick: on digits). A flag shown with [KEY: V] sets
config key KEY; V is its default in configs/base.yaml, which configs/data/<data>.yaml and
configs/methods/<method>[/<data>].yaml may change (e.g. 20 epochs for --data digits). Each
run's config.yaml holds every value it used.
"""


def _base_defaults() -> dict:
    """configs/base.yaml as ``{"trainer.epochs": 100, ...}`` (PyYAML only: --help stays fast)."""
    import yaml

    def flat(tree, prefix=""):
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                yield from flat(value, f"{name}.")
            else:
                yield name, value

    with open(CONFIG_DIR / "base.yaml") as handle:
        return dict(flat(yaml.safe_load(handle)))


def build_parser() -> argparse.ArgumentParser:
    from infossl.training import DEFAULT_DATA, QUICK_DATA

    base = _base_defaults()

    def key(flag: str, text: str = "") -> str:
        name = FLAG_TO_KEY[flag]
        value = base[name]
        shown = str(value).lower() if isinstance(value, bool) else value
        return f"{text} [{name}: {shown}]".strip()

    methods = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "methods").glob("*.yaml")))
    datasets = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml")))
    p = ArgumentParser(
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", help=f"one of {methods} (required for a new run)")
    p.add_argument("--config", help="YAML file merged over the method x dataset defaults")
    p.add_argument(
        "--data",
        help=f"one of {datasets} (default: {DEFAULT_DATA}; with --quick: {QUICK_DATA})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="demo preset (configs/quick.yaml): ResNet-9 at 1/4 width, 5 epochs",
    )
    p.add_argument("--data-dir", help=key("data_dir", "where the dataset lies"))
    p.add_argument(
        "--download",
        action="store_true",
        default=None,
        help=key("download", "download the dataset if missing (torchvision datasets)"),
    )
    p.add_argument(
        "--backbone", help=key("backbone", "resnet18|34|50, timm:NAME or lightly:resnet-N")
    )
    p.add_argument("--epochs", type=int, help=key("epochs"))
    p.add_argument("--batch-size", type=int, help=key("batch_size", "per device"))
    p.add_argument("--num-workers", type=int, help=key("num_workers", "loader workers per device"))
    p.add_argument(
        "--gpus", type=int, help="N > 0: N CUDA GPUs (DDP when N > 1), 0: CPU; sets both below"
    )
    p.add_argument("--accelerator", help=key("accelerator", "auto, cpu or gpu"))
    p.add_argument("--devices", type=int, help=key("devices", "processes per node (DDP when > 1)"))
    p.add_argument("--num-nodes", type=int, help=key("num_nodes"))
    p.add_argument("--precision", help=key("precision", "auto, 32, 16-mixed or bf16-mixed"))
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help=key("compile", "torch.compile the backbone"),
    )
    p.add_argument("--augment-on", help=key("augment_on", "cpu, gpu or auto: where views are made"))
    p.add_argument(
        "--resume", help="PATH to a checkpoint, or 'auto' for this run's newest (default: none)"
    )
    p.add_argument("--run-dir", default="runs", help="parent of run directories (default: runs)")
    p.add_argument("--name", help="run name (default: <method>-<data>, --quick: ...-quick)")
    p.add_argument("--seed", type=int, help=key("seed"))
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


def result_line(result: dict) -> str:
    """``finished: 5 epochs, 55 steps in 109.2 s; val/online_top1=0.894``."""
    shown = "; " + ", ".join(
        f"{k}={v:.3f}" for k, v in sorted(result["metrics"].items()) if k.startswith("val/")
    )
    epochs = f"{result['epochs']} epoch{'' if result['epochs'] == 1 else 's'}"
    return (
        f"{result['status']}: {epochs}, {result['global_step']} steps in "
        f"{result['wall_time_s']} s{shown if shown != '; ' else ''}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from infossl.rundir import write_metrics
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
            quick=args.quick,
        )
    )
    if result is not None:
        result["wall_time_s"] = round(time.time() - started, 1)
        result["command"] = " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])])
        path = write_metrics(result.pop("run_dir"), result)
        print(result_line(result))
        print(f"wrote {path}")
    return 0


def run() -> int:
    """The console script (``infossl-train``): bad input is one line on stderr, exit 2."""
    return run_cli(main)
