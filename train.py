"""Pretrain a backbone with a mutual-information objective (the same as ``infossl-train``).

python train.py --method infonce --data digits --epochs 20
python train.py --method corinfomax --data cifar10 --gpus 8 --resume auto
python train.py --method infonce --data digits optimizer.lr=0.3 loss.temperature=0.1
"""

import sys

from infossl.cli_train import build_parser, main, run

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(run())
