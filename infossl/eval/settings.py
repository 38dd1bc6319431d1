"""The checks of an ``eval_linear.py`` request that need no torch, and its resolved settings.

Every flag and setting of configs/eval/linear.yaml, and that the checkpoint file exists. They
run before the heavy stack loads, so a typo answers in a fraction of a second
(tests/test_cli_startup.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from infossl import config as C
from infossl import config_schema as S
from infossl.errors import UserError

EVAL_FLAGS = ("epochs", "batch_size", "lr", "augment", "num_workers", "precision", "seed")


def eval_settings(args) -> dict:
    """configs/eval/linear.yaml with the flags given, checked (``num_workers`` may still be
    ``auto``: ``infossl.runtime.resolve_num_workers`` turns it into a number)."""
    cfg = C.load_yaml(C.CONFIG_DIR / "eval" / "linear.yaml")
    given = {k: getattr(args, k) for k in EVAL_FLAGS if getattr(args, k, None) is not None}
    settings = OmegaConf.to_container(C.merge_values(cfg, given))
    # Every flag and setting before any data is read or anything is written: a NaN lr would
    # otherwise train a chance-level probe and record it as a result.
    S.check_mapping(settings, S.LinearEval)
    S.check(list(args.recall_k), S.RecallK, "--recall-k")
    if args.gpus is not None and args.gpus < 0:
        raise UserError(f"--gpus {args.gpus}: give 0 (CPU) or a positive number of GPUs")
    return settings


def check_request(args) -> None:
    """Refuse bad settings and a missing checkpoint before torch is imported."""
    eval_settings(args)
    if not Path(args.ckpt).is_file():
        # The same words as infossl.reliability.checkpoint_io.load_checkpoint_safely.
        raise UserError(
            f"checkpoint {args.ckpt} does not exist; give the path of a .ckpt file written by "
            "train.py"
        )
