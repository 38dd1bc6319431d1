"""Evaluate what a pretrained backbone learned (the same as ``infossl-eval``).

Offline linear probe, weighted kNN, collapse diagnostics; or Recall@K retrieval on unseen
classes (--protocol retrieval).

    python eval_linear.py --ckpt runs/infonce-digits/checkpoints/last.ckpt
    python eval_linear.py --ckpt ... --data cifar10 --epochs 100 --gpus 1 --precision bf16-mixed
"""

import sys

from infossl.cli_eval import build_parser, main, run

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(run())
