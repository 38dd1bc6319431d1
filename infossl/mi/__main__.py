"""``python -m infossl.mi x.npy y.npy``: print I(X; Y) with its uncertainty (one line).

Bad input (a missing or unreadable file, NaNs, mismatched N, too few samples for the batch, an
unknown estimator) is one line on stderr and exit 2. ``--json FILE`` also writes the full result
(curve and settings included).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

USAGE_EXIT = 2


class _Parser(argparse.ArgumentParser):
    # One line and exit 2 for a malformed flag, as every infossl command (infossl/cli.py); that
    # module is not imported here because it pulls in Lightning and timm.
    def error(self, message: str):
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load(path: str):
    import numpy as np

    from infossl.mi.inputs import MIInputError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MIInputError(f"cannot read {path}: {' '.join(str(err).split())}") from None


def main(argv=None) -> int:
    p = _Parser(prog="python -m infossl.mi", description=__doc__.split("\n\n")[0])
    p.add_argument("x", help=".npy file, shape (N,) or (N, dx)")
    p.add_argument("y", help=".npy file, shape (N,) or (N, dy)")
    p.add_argument("--estimator", default="smile")
    p.add_argument("--critic", default="separable", choices=["separable", "concat"])
    p.add_argument(
        "--anchor",
        choices=["gaussian", "none"],
        help="start the critic from the fitted Gaussian (estimate's default) or from scratch",
    )
    p.add_argument("--steps", type=int, default=5000, help="most training steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, help="default: 5e-4 (critics), 3e-3 (KNIFE)")
    p.add_argument("--weight-decay", type=float, help="AdamW's; default 2 (critics), 0 (KNIFE)")
    p.add_argument("--preprocess", default="standardize", help="standardize | copula | none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", type=Path, help="also write the full result here")
    args = p.parse_args(argv)
    from infossl.mi.fit import estimate
    from infossl.mi.inputs import MIInputError, anchor_keyword

    try:
        x, y = _load(args.x), _load(args.y)
        res = estimate(
            x,
            y,
            args.estimator,
            critic=args.critic,
            max_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            preprocess=args.preprocess,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            **anchor_keyword(args.anchor),
        )
    except MIInputError as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return USAGE_EXIT
    print(res)
    if args.json is not None:
        args.json.write_text(json.dumps(res.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
