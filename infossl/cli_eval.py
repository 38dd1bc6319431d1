"""Evaluate what a pretrained backbone learned: linear probe and kNN, or Recall@K retrieval.

Offline linear probe, weighted kNN and collapse diagnostics; or Recall@K retrieval on unseen
classes (--protocol retrieval).

    python eval_linear.py --ckpt runs/infonce-digits/checkpoints/last.ckpt
    python eval_linear.py --ckpt ... --data cifar10 --epochs 100 --gpus 1 --precision bf16-mixed
"""

from __future__ import annotations

import argparse

from infossl.cli import ArgumentParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ckpt", required=True, help="a checkpoint written by train.py")
    p.add_argument("--protocol", choices=["linear", "retrieval"], default="linear")
    p.add_argument("--data", help="dataset (default: the one the run was trained on)")
    p.add_argument("--data-dir", help="where the dataset lies (default: the run's data.dir)")
    p.add_argument("--download", action="store_true", default=None)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--augment", choices=["none", "crop-flip"])
    p.add_argument("--num-workers", type=int)
    p.add_argument("--gpus", type=int, help="N > 0: evaluate on CUDA (features on GPU 0)")
    p.add_argument("--accelerator", help="auto, cpu or gpu")
    p.add_argument("--precision", help="32, 16-mixed or bf16-mixed (feature extraction)")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="evaluate the same architecture at random initialisation (baseline)",
    )
    p.add_argument(
        "--recall-k",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="retrieval: K values for Recall@K",
    )
    p.add_argument(
        "--out", help="results JSON (default: <run>/eval/<data>_<protocol>_<checkpoint>.json)"
    )
    p.add_argument("--seed", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from infossl.eval.settings import check_request

    check_request(args)  # a bad flag or a missing checkpoint answers before torch loads
    from infossl.eval.offline import run_evaluation

    run_evaluation(args)
    return 0


def run() -> int:
    """The console script (``infossl-eval``): bad input is one line on stderr, exit 2."""
    return run_cli(main)
