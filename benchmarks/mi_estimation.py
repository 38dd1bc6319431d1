"""Correlated-Gaussian MI staircase (Poole et al. 2019; Song & Ermon 2020; ReMINE's experiments.py).

d = 20, batch 64, Adam 5e-4, critics with two 256-unit ReLU hidden layers, true MI 2, 4, 6, 8, 10
nats held for ``--steps-per-level`` steps each (4 000 in the papers), fresh samples every step.
Reported per estimator x level over the last quarter of the level's steps: mean estimate, bias,
variance and MSE against the true MI (pooled over seeds).

    python benchmarks/mi_estimation.py --estimators infonce nwj mine+reg flo --critic concat \
        --steps-per-level 4000 --seeds 0 --out runs/mi

``--semantics official`` trains the bounds as ReMINE's Gaussian code does
(Siyeong-Lee/Deconstructing-MINE, ``experiments.py``) where that differs from Poole's / Song &
Ermon's: SMILE (and ReSMILE) with tau = 10 trained on the clipped DV value itself
(``smile_lower_bound``, ``resmile_lower_bound``); TUBA with a = 1 (no learned baseline,
``tuba_lower_bound(a_y=1.0)``); ReNWJ / ReTUBA with the scores clipped to [-10, 10] inside the
value (``retuba_lower_bound``); KNIFE with the official per-sample |-log p| (g-pichler/knife,
``MultiGaussKernelEE.forward``). DV, JS and InfoNCE are the same under both; rows get the suffix
``[official]``.

A new estimator family is one entry of ``RUNNERS``: a builder returning an nn.Module whose
``forward(x, y)`` gives ``(loss, mi_estimate)``, with its own batch size and learning rate if the
paper used other ones (KNIFE: batch 128, lr 1e-3). ``--merge`` combines the outputs of several runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

# infossl is the installed package; the sibling helper module is found as benchmarks._... when
# imported (tests), and from this folder, sys.path[0], when run as a script.
if __package__:
    from benchmarks._gaussian import mi_staircase, mi_to_rho, sample_correlated_gaussian
else:
    from _gaussian import mi_staircase, mi_to_rho, sample_correlated_gaussian
from infossl.losses.critics import (
    ConcatCritic,
    FLOSharedCritic,
    SeparableCritic,
    mlp,
)
from infossl.losses.flo import flo
from infossl.losses.knife import JointKNIFE
from infossl.losses.mi_bounds import MIBoundLoss

LEVELS = [2.0, 4.0, 6.0, 8.0, 10.0]


@dataclass
class RunConfig:
    dim: int = 20
    critic: str = "concat"
    hidden_dim: int = 256
    layers: int = 2
    embed_dim: int = 32
    reg_weight: float = 0.0
    reg_target: float = 0.0
    reg_distance: str = "squared"
    semantics: str = "ours"  # ours | official (ReMINE's experiments.py, see OFFICIAL_KWARGS)


# ReMINE's experiments.py arithmetic: estimator -> (kwargs unregularized, kwargs with +reg).
OFFICIAL_CLIP = 10.0
OFFICIAL_KWARGS: dict[str, tuple[dict, dict]] = {
    "smile": ({"clip": OFFICIAL_CLIP, "objective": "dv"},) * 2,
    "nwj": ({}, {"clip": OFFICIAL_CLIP}),
    "tuba": ({}, {"clip": OFFICIAL_CLIP}),
}


@dataclass
class RunnerSpec:
    build: Callable[[RunConfig], nn.Module]  # module: forward(x, y) -> (loss, mi_estimate)
    batch_size: int | None = None  # None: --batch-size
    lr: float | None = None  # None: --lr
    regularizable: bool = True
    uses_critic: bool = True  # False: one run, under the first --critic name (a row label only)


def make_critic(cfg: RunConfig) -> nn.Module:
    if cfg.critic == "separable":
        return SeparableCritic(cfg.dim, cfg.dim, cfg.hidden_dim, cfg.embed_dim, cfg.layers)
    if cfg.critic == "concat":
        return ConcatCritic(cfg.dim, cfg.dim, cfg.hidden_dim, cfg.layers)
    raise ValueError(f"unknown critic {cfg.critic!r}")


class BoundRunner(nn.Module):
    """A critic + one of ``mi_bounds.ESTIMATORS``; TUBA adds Poole's "unnormalized" baseline
    log a(x) (MLP, 512 hidden, 2 layers, scalar) on the row variable, except under the official
    ReMINE semantics (a = 1)."""

    def __init__(self, estimator: str, cfg: RunConfig):
        super().__init__()
        official = cfg.semantics == "official"
        kwargs = {}
        if official and estimator in OFFICIAL_KWARGS:
            kwargs = OFFICIAL_KWARGS[estimator][cfg.reg_weight != 0.0]
        self.critic = make_critic(cfg)
        self.bound = MIBoundLoss(
            estimator, cfg.reg_weight, cfg.reg_target, cfg.reg_distance, **kwargs
        )
        use_baseline = estimator == "tuba" and not official
        self.baseline = mlp(cfg.dim, 512, 1, 2) if use_baseline else None

    def forward(self, x, y):
        extra = {} if self.baseline is None else {"log_baseline": self.baseline(x).squeeze(-1)}
        out = self.bound(self.critic(x, y), **extra)
        return out.loss, out.mi


class FLORunner(nn.Module):
    """FLO: concat -> one shared MLP with (g, u) heads (FLO's recommended form); separable -> the
    separable g plus a separate u-MLP on the joint pairs (FLO's separate parametrisation)."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.shared = cfg.critic == "concat"
        if self.shared:
            self.net = FLOSharedCritic(cfg.dim, cfg.dim, cfg.hidden_dim, cfg.layers)
        else:
            self.net = make_critic(cfg)
            self.u_net = mlp(2 * cfg.dim, cfg.hidden_dim, 1, cfg.layers)
        self.reg = dict(
            reg_weight=cfg.reg_weight, reg_target=cfg.reg_target, reg_distance=cfg.reg_distance
        )

    def forward(self, x, y):
        if self.shared:
            g, u = self.net(x, y)
        else:
            g, u = self.net(x, y), self.u_net(torch.cat([x, y], dim=1)).squeeze(-1)
        out = flo(g, u, **self.reg)
        return out["loss"], out["mi"]


RUNNERS: dict[str, RunnerSpec] = {
    name: RunnerSpec(lambda cfg, name=name: BoundRunner(name, cfg))
    for name in ("infonce", "dv", "mine", "nwj", "tuba", "js", "smile")
}
RUNNERS["flo"] = RunnerSpec(FLORunner)


class KnifeRunner(nn.Module):
    """KNIFE, joint variant, as the paper's Gaussian MI experiment (g-pichler/knife,
    synthetic_experiments/mi_estimators.py main: MIKernelEstimator(use_joint=True), three kernels
    of batch_size // 6 = 21 modes, full precisions, learned weights, Adam lr 1e-3, batch 128).
    The loss fits the three densities (h(X) + h(Y) + h(X,Y)); the estimate is |h(X) + h(Y) -
    h(X,Y)|. No critic: ``--critic`` only labels the row."""

    def __init__(self, cfg: RunConfig, batch_size: int = 128):
        super().__init__()
        self.knife = JointKNIFE(
            cfg.dim,
            cfg.dim,
            num_modes=batch_size // 6,
            per_sample_abs=cfg.semantics == "official",  # MultiGaussKernelEE.forward's |-log p|
        )

    def forward(self, x, y):
        out = self.knife(x, y)
        return out.fit_loss, out.mi.detach()


RUNNERS["knife"] = RunnerSpec(
    KnifeRunner, batch_size=128, lr=1e-3, regularizable=False, uses_critic=False
)


def parse_name(name: str, reg_weight: float) -> tuple[str, float]:
    """'mine+reg' -> ('mine', reg_weight); 'mine' -> ('mine', 0)."""
    base, _, suffix = name.partition("+")
    if base not in RUNNERS or suffix not in ("", "reg"):
        raise ValueError(f"unknown estimator {name!r}; choose from {sorted(RUNNERS)} (+reg)")
    return base, (reg_weight if suffix == "reg" else 0.0)


def train_one(spec: RunnerSpec, cfg: RunConfig, true_mi: np.ndarray, seed: int, args, log=None):
    """Train one estimator on the staircase; per-step estimates (NaN where it diverged)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    device = torch.device(args.device)
    model = spec.build(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr or args.lr)
    batch = spec.batch_size or args.batch_size
    estimates = np.full(len(true_mi), np.nan)
    for step, mi in enumerate(true_mi):
        x, y = sample_correlated_gaussian(batch, cfg.dim, mi_to_rho(cfg.dim, mi), args.cubic, gen)
        loss, estimate = model(x.to(device), y.to(device))
        if not torch.isfinite(loss):  # MINE/NWJ can explode; skip the update, record NaN
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        estimates[step] = float(estimate)
        if log is not None and step % 10 == 0:
            log(step, estimates[step], mi)
    return estimates


def summarize(estimates: np.ndarray, true_mi: np.ndarray, levels, steps_per_level) -> list[dict]:
    """Per level: stats over the last quarter of its steps; ``estimates`` is (seeds, steps)."""
    rows = []
    for k, level in enumerate(levels):
        start = k * steps_per_level + (3 * steps_per_level) // 4
        window = estimates[:, start : (k + 1) * steps_per_level].ravel()
        ok = window[np.isfinite(window)]
        err = ok - level
        rows.append(
            dict(
                true_mi=level,
                mean=float(ok.mean()) if ok.size else float("nan"),
                bias=float(err.mean()) if ok.size else float("nan"),
                variance=float(ok.var()) if ok.size else float("nan"),
                mse=float((err**2).mean()) if ok.size else float("nan"),
                n=int(ok.size),
                diverged_steps=int(window.size - ok.size),
            )
        )
    return rows


def ewm(values: np.ndarray, span: int = 200) -> np.ndarray:
    """pandas ``ewm(span=span).mean()`` without the adjust term, skipping NaN (diverged) steps."""
    alpha, acc, out = 2.0 / (span + 1), np.nan, np.empty_like(values)
    for i, v in enumerate(values):
        if np.isfinite(v):
            acc = v if not np.isfinite(acc) else acc + alpha * (v - acc)
        out[i] = acc
    return out


def plot(traces: dict[str, np.ndarray], true_mi: np.ndarray, batch_size: int, path: Path):
    """One panel per critic x base estimator, unregularized and +reg overlaid, EMA span 200 as in
    the papers' figures, true MI as the black staircase, log K for InfoNCE-type bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def base(name: str) -> str:
        return name.replace("[official]", "").split("+")[0]

    panels = sorted({(k.split("|")[0], base(k.split("|")[1])) for k in traces})
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    axes = axes.ravel()
    steps = np.arange(len(true_mi))
    for key, est in sorted(traces.items()):
        critic, name = key.split("|")[:2]
        ax = axes[panels.index((critic, base(name)))]
        color = "tab:red" if "+reg" in name else "tab:blue"
        if "[official]" in name:
            color = "tab:green" if "+reg" in name else "tab:purple"
        mean = np.nanmean(est, axis=0) if np.isfinite(est).any() else est[0]
        ax.plot(steps, mean, color=color, alpha=0.15, lw=0.5)
        ax.plot(steps, ewm(mean), color=color, lw=1.2, label=name)
    for ax, (critic, name) in zip(axes, panels, strict=False):
        ax.plot(steps, true_mi, color="black", lw=1)
        if name == "infonce":
            ax.axhline(math.log(batch_size), color="gray", ls="--", lw=0.8)
        ax.set_ylim(0, max(true_mi) + 4)
        ax.set_title(f"{name} ({critic})", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| critic | estimator | true MI | mean | bias | variance | MSE | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['critic']} | {r['estimator']} | {r['true_mi']:.0f} | {r['mean']:.3f} | "
            f"{r['bias']:+.3f} | {r['variance']:.3f} | {r['mse']:.3f} | {r['diverged_steps']} |"
        )
    return "\n".join(lines)


def write_outputs(out: Path, results, traces, true_mi, meta):
    out.mkdir(parents=True, exist_ok=True)
    (out / "mi_estimation.json").write_text(json.dumps({**meta, "results": results}, indent=1))
    np.savez_compressed(out / "traces.npz", true_mi=true_mi, **traces)
    plot(traces, true_mi, meta["batch_size"], out / "mi_estimation.png")


def merge(dirs: list[str], out: Path):
    results, traces, metas = [], {}, []
    for d in dirs:
        meta = json.loads((Path(d) / "mi_estimation.json").read_text())
        results += meta.pop("results")
        metas.append(meta)
        with np.load(Path(d) / "traces.npz") as z:
            true_mi = z["true_mi"]
            traces.update({k: z[k] for k in z.files if k != "true_mi"})
    meta = {**metas[0], "merged_from": metas}
    write_outputs(out, results, traces, true_mi, meta)
    print(markdown_table(results))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", nargs="+", default=["infonce", "nwj", "mine", "flo"])
    p.add_argument(
        "--reg-weight",
        type=float,
        nargs="+",
        default=[1.0],
        help="lambda for '+reg' names (ReMINE experiments.py: 1.0); several -> one run each",
    )
    p.add_argument("--reg-target", type=float, default=0.0, help="C (ReMINE code: 0)")
    p.add_argument("--reg-distance", default="squared", choices=["squared", "absolute"])
    p.add_argument(
        "--semantics",
        default="ours",
        choices=["ours", "official"],
        help="official: ReMINE's experiments.py training of smile/nwj/tuba (module docstring)",
    )
    p.add_argument("--critic", nargs="+", default=["concat"], choices=["separable", "concat"])
    p.add_argument("--cubic", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps-per-level", type=int, default=4000)
    p.add_argument("--levels", type=float, nargs="+", default=LEVELS)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--merge", nargs="+", help="combine the --out dirs of earlier runs into --out")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    true_mi = mi_staircase(args.levels, args.steps_per_level)
    jobs = []
    for name in args.estimators:
        for lam in args.reg_weight if name.endswith("+reg") else [0.0]:
            base, _ = parse_name(name, lam)
            label = name if len(args.reg_weight) == 1 or lam == 0 else f"{name}{lam:g}"
            if args.semantics == "official":
                label += "[official]"
            critics = args.critic if RUNNERS[base].uses_critic else args.critic[:1]
            jobs += [(critic, label, base, lam) for critic in critics]
    writer_cls = None
    if not args.no_tensorboard:
        from torch.utils.tensorboard import SummaryWriter as writer_cls
    results, traces, seconds = [], {}, {}
    for critic, label, base, lam in jobs:
        cfg = RunConfig(
            dim=args.dim,
            critic=critic,
            reg_weight=lam,
            reg_target=args.reg_target,
            reg_distance=args.reg_distance,
            semantics=args.semantics,
        )
        spec = RUNNERS[base]
        runs, t0 = [], time.time()
        for seed in args.seeds:
            writer = (
                writer_cls(str(args.out / "tb" / critic / label / f"seed{seed}"))
                if writer_cls
                else None
            )
            bar = tqdm(total=len(true_mi), desc=f"{critic}/{label}/s{seed}", mininterval=5)

            def log(step, est, mi, writer=writer, bar=bar):
                bar.update(10)
                if writer is not None:
                    writer.add_scalar("mi/estimate", est, step)
                    writer.add_scalar("mi/true", mi, step)

            runs.append(train_one(spec, cfg, true_mi, seed, args, log))
            bar.close()
            if writer is not None:
                writer.close()
        est = np.stack(runs)
        key = f"{critic}|{label}"
        traces[key], seconds[key] = est, time.time() - t0
        for row in summarize(est, true_mi, args.levels, args.steps_per_level):
            results.append(
                dict(
                    critic=critic,
                    estimator=label,
                    reg_weight=lam,
                    reg_target=args.reg_target if lam else None,
                    **row,
                )
            )
    meta = dict(
        command=" ".join(sys.argv),
        batch_size=args.batch_size,
        lr=args.lr,
        dim=args.dim,
        steps_per_level=args.steps_per_level,
        levels=args.levels,
        seeds=args.seeds,
        cubic=args.cubic,
        semantics=args.semantics,
        device=args.device,
        seconds=seconds,
    )
    write_outputs(args.out, results, traces, true_mi, meta)
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
