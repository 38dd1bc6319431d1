"""KNIFE nuisance removal on digits: classify the digit while minimising I(Z; s) with KNIFE.

The pattern of KNIFE's fair-classification and domain-adaptation experiments (Pichler et al.,
ICML 2022; g-pichler/knife ``da_experiments``), offline: every digit is tinted with one of four
colours s drawn independently of the label (``infossl/data/nuisance.py``), so s is easy to learn
and useless for the label. A ResNet encodes the image to Z (16-d), a linear layer predicts the
digit; the loss is cross-entropy + lambda * I_KNIFE(Z; s), the estimator fitted every step on the
detached Z by its own Adam (``infossl/losses/knife_regularizer.py``, the official loop; Z is
standardized per dimension first, which leaves I(Z; s) unchanged but stops the encoder from
fooling the estimator by rescaling Z, and KNIFE takes ``--fit-steps`` updates per encoder step,
where the official code trains 25 000 steps with one each). For each
lambda we report label accuracy against the leakage of s: a logistic-regression probe's test
accuracy predicting s from Z (chance 25%), and KNIFE's estimate of I(Z; s) (at most log 4 = 1.386).

    python benchmarks/knife_nuisance.py --lambdas 0 0.01 0.1 1 --seeds 0 1 2 --out runs/nuisance

Writes ``<out>/results.json`` (resumable with ``--resume``), ``table.md`` and ``leakage.png``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._downstream_common import ResultStore, fmt, image_tensors, mean_std  # noqa: E402
from infossl.backbones import build_backbone  # noqa: E402
from infossl.data.nuisance import tint_nuisance  # noqa: E402
from infossl.losses.knife_regularizer import KnifeRegularizer  # noqa: E402

NUISANCE_VALUES = 4


def nuisance_digits(image_size: int):
    """Train / test digits tinted by s (different draws per split), with labels and s."""
    splits = []
    for split, seed in (("train", 0), ("val", 1)):
        images, labels = image_tensors("digits", "./data", split, image_size)
        tinted, s = tint_nuisance(images, NUISANCE_VALUES, seed)
        splits.append((tinted, labels, s))
    return splits


def probe_accuracy(z_train, s_train, z_test, s_test) -> float:
    """Test accuracy of a logistic regression predicting s from Z (the leakage probe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(z_train)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(z_train), s_train)
    return float(probe.score(scaler.transform(z_test), s_test))


class Encoder(nn.Module):
    def __init__(self, backbone: str, width: float, image_size: int, z_dim: int):
        super().__init__()
        self.body, feature_dim = build_backbone(backbone, image_size, width=width)
        self.z = nn.Linear(feature_dim, z_dim)
        self.classify = nn.Linear(z_dim, 10)

    def forward(self, x):
        z = self.z(self.body(x))
        return z, self.classify(z)


@torch.no_grad()
def _encode(model, images, batch=500):
    model.eval()
    z, logits = zip(
        *(model(images[i : i + batch]) for i in range(0, len(images), batch)), strict=True
    )
    model.train()
    return torch.cat(z), torch.cat(logits)


def run(lam: float, seed: int, args, data) -> dict:
    (x, y, s), (x_test, y_test, s_test) = data
    torch.manual_seed(seed)
    started = time.time()
    model = Encoder(args.backbone, args.width, args.image_size, args.z_dim)
    knife = KnifeRegularizer(
        {
            "name": "knife_mi",
            "nuisance": "data",
            "num_classes": NUISANCE_VALUES,
            "weight": lam,
            "direction": "minimize",
            "modes": args.modes,
            "standardize": True,
            "fit_steps": args.fit_steps,
        },
        dim=args.z_dim,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(seed)
    estimates, diverged = [], False
    for epoch in range(args.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[start : start + args.batch_size]
            z, logits = model(x[idx])
            term, logs = knife(z, s[idx])  # fits KNIFE on z.detach(), then lambda * I(z; s)
            loss = F.cross_entropy(logits, y[idx]) + term
            if not torch.isfinite(loss):
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if epoch == args.epochs - 1:
                estimates.append(float(logs["knife_mi"]))
        if diverged:
            break
    z_train, _ = _encode(model, x)
    z_test, logits_test = _encode(model, x_test)
    return {
        "lambda": lam,
        "seed": seed,
        "label_accuracy": float((logits_test.argmax(1) == y_test).double().mean()),
        "nuisance_probe_accuracy": probe_accuracy(
            z_train.numpy(), s.numpy(), z_test.numpy(), s_test.numpy()
        ),
        "knife_mi_estimate": float(np.mean(estimates)) if estimates else math.nan,
        "status": "diverged" if diverged else "finished",
        "wall_time_s": round(time.time() - started, 1),
    }


def write_table(runs: list[dict], settings: dict, out: Path) -> str:
    lines = [
        f"KNIFE nuisance removal on tinted digits (s: {NUISANCE_VALUES} colours, chance "
        f"{100 / NUISANCE_VALUES:.0f}%; I(Z; s) <= log {NUISANCE_VALUES} = "
        f"{math.log(NUISANCE_VALUES):.3f}), mean ± std over seeds {settings['seeds']}.",
        "",
        "| lambda | label accuracy | probe accuracy on s (leakage) | KNIFE I(Z; s) (nats) |",
        "|---|---|---|---|",
    ]
    for lam in settings["lambdas"]:
        rows = [r for r in runs if r["lambda"] == lam]
        cells = (
            fmt(*mean_std(r[k] for r in rows))
            for k in ("label_accuracy", "nuisance_probe_accuracy", "knife_mi_estimate")
        )
        lines.append(f"| {lam:g} | {' | '.join(cells)} |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def plot(runs: list[dict], settings: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for lam in settings["lambdas"]:
        rows = [r for r in runs if r["lambda"] == lam]
        ax.scatter(
            [r["nuisance_probe_accuracy"] for r in rows],
            [r["label_accuracy"] for r in rows],
            label=f"lambda = {lam:g}",
        )
    ax.axvline(1 / NUISANCE_VALUES, color="k", ls="--", lw=1, label="chance on s")
    ax.set_xlabel("leakage: probe accuracy predicting s from Z")
    ax.set_ylabel("digit test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "leakage.png", dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", choices=["digits"], default="digits")
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.01, 0.1, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--backbone", default="lightly:resnet-9")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--modes", type=int, default=32, help="KNIFE kernels (marginal, conditional)")
    p.add_argument("--fit-steps", type=int, default=5, help="KNIFE updates per encoder step")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = {
        k: getattr(args, k)
        for k in (
            "data",
            "lambdas",
            "seeds",
            "epochs",
            "batch_size",
            "lr",
            "backbone",
            "width",
            "image_size",
            "z_dim",
            "modes",
            "fit_steps",
        )
    }
    store = ResultStore(args.out / "results.json", settings, args.resume)
    data = nuisance_digits(args.image_size)
    grid = [(lam, seed) for lam in args.lambdas for seed in args.seeds]
    for lam, seed in tqdm(grid, desc="nuisance runs"):
        run_id = f"lambda={lam}|seed={seed}"
        if not store.done(run_id):
            store.add({"id": run_id, **run(lam, seed, args, data)})
    print(write_table(store.runs, settings, args.out), end="")
    plot(store.runs, settings, args.out)
    print(f"wrote {args.out}/results.json, table.md, leakage.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
