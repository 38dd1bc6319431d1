"""Differential-entropy estimation with KNIFE against analytic truth (Pichler et al., ICML 2022).

Reproduces the official notebook g-pichler/knife synthetic_experiments/estimate_entropy.ipynb:
  gaussian10 / gaussian64  X ~ N(0, I_d), h = (d/2) log(2 pi e); batch 128, M = 128 kernel samples,
                           Adam lr 1e-2, 1 epoch x 200 iterations, 20 repetitions ("section 3.1.1")
  stepdown                 d = 64, covariance x 0.5 at 4 evenly spaced points of 5 x 1000
                           iterations (5 levels, as the official rho_steps = 5 schedule), lr 1e-2
  triangle1d               1-D mixture of 10 symmetric triangles, lr 0.1, 10 x 200 iterations
                           (Fig. 2 left)
  triangle8d               8-D, every coordinate i.i.d. from one 2-component triangle mixture,
                           lr 1e-3, 20 x 1000 iterations, 3 repetitions (Fig. 2 right)
Estimators (all see the same batches, each its own Adam): KNIFE (learned means, weights, full
precisions), "Schraudolph" (means fixed at the kernel samples, diagonal precisions, uniform
weights), "DoE" (one diagonal Gaussian, mean and log-variance initialised N(0, 1) as the
official nn.Embedding). Final estimate: -mean log p over ``iters`` fresh batches, as the official
script; reported: mean and std over repetitions of |estimate - h| (the official summary) and the
signed error. Differences: we run float32 (the official data are float64 numpy arrays) and draw
fresh samples each iteration (the official loader shuffles one pre-drawn set of the same size).

    python benchmarks/entropy_estimation.py --experiments gaussian10 gaussian64 --out runs/entropy
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infossl.losses.knife import MarginalKNIFE


@dataclass
class Experiment:
    kind: str  # gaussian | triangle
    dim: int
    lr: float
    epochs: int
    iters: int
    reps: int
    batch_size: int = 128
    modes: int = 128
    components: int = 0  # triangle mixtures
    cov_steps: int = 1  # stepdown: number of covariance levels
    cov_factor: float = 1.0


EXPERIMENTS = {
    "gaussian10": Experiment("gaussian", 10, 1e-2, 1, 200, 20),
    "gaussian64": Experiment("gaussian", 64, 1e-2, 1, 200, 20),
    "stepdown": Experiment("gaussian", 64, 1e-2, 5, 1000, 1, cov_steps=5, cov_factor=0.5),
    "triangle1d": Experiment("triangle", 1, 1e-1, 10, 200, 1, components=10),
    "triangle8d": Experiment("triangle", 8, 1e-3, 20, 1000, 3, components=2),
}
MODELS = ("KNIFE", "Schraudolph", "DoE")


class DiagonalGaussian(nn.Module):
    """The DoE baseline (official doe/util.py ``PDF``): one diagonal Gaussian, -mean log p."""

    def __init__(self, dim: int):
        super().__init__()
        self.mu, self.ln_var = nn.Parameter(torch.randn(dim)), nn.Parameter(torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nll = 0.5 * ((x - self.mu) ** 2 / self.ln_var.exp() + self.ln_var + math.log(2 * math.pi))
        return nll.sum(1).mean()


class TriangleMixture:
    """Official ``get_random_data_generator('triangle', n)``: component k is scipy's
    triang(c=0.5) on [k, k + s_k], s_k ~ U(0.1, 1), weights = spacings of sorted uniforms.
    Supports do not overlap, so h = sum_k w_k h(triangle_k) + H(w), h(triangle on width s) =
    1/2 + log(s/2); a d-dimensional vector of i.i.d. coordinates has d times that."""

    def __init__(self, components: int, dim: int, rng: np.random.Generator):
        self.dim, self.rng = dim, rng
        self.weights = np.diff(
            np.concatenate([[0.0], np.sort(rng.uniform(size=components - 1)), [1.0]])
        )
        self.scales = 0.1 + 0.9 * rng.uniform(size=components)
        self.starts = np.arange(components, dtype=np.float64)

    def entropy(self) -> float:
        w = self.weights[self.weights > 0]
        h1 = float((self.weights * (0.5 + np.log(self.scales / 2))).sum() - (w * np.log(w)).sum())
        return self.dim * h1

    def sample(self, n: int) -> torch.Tensor:
        k = self.rng.choice(len(self.weights), size=(n, self.dim), p=self.weights)
        x = self.starts[k] + self.scales[k] * self.rng.triangular(0.0, 0.5, 1.0, size=(n, self.dim))
        return torch.as_tensor(x, dtype=torch.float32)

    def pdf(self, grid: np.ndarray) -> np.ndarray:
        out = np.zeros_like(grid)
        for w, s, a in zip(self.weights, self.scales, self.starts, strict=True):
            out += w * np.clip(2 / s - 4 / s**2 * np.abs(grid - a - s / 2), 0, None)
        return out


class GaussianSource:
    def __init__(self, dim: int, variance: float, gen: torch.Generator):
        self.dim, self.variance, self.gen = dim, variance, gen

    def entropy(self) -> float:
        return 0.5 * self.dim * math.log(2 * math.pi * math.e * self.variance)

    def sample(self, n: int) -> torch.Tensor:
        return math.sqrt(self.variance) * torch.randn(n, self.dim, generator=self.gen)


def build_models(exp: Experiment, kernel_samples: torch.Tensor) -> dict[str, nn.Module]:
    return {
        # estimate_entropy.py args_adaptive: optimize_mu, average='var', full precisions
        "KNIFE": MarginalKNIFE(exp.dim, exp.modes, init_samples=kernel_samples),
        # args_schraudolph: optimize_mu False, cov_off_diagonal 'zero', average 'fixed'
        "Schraudolph": MarginalKNIFE(
            exp.dim,
            exp.modes,
            learn_means=False,
            learn_weights=False,
            full_covariance=False,
            init_samples=kernel_samples,
        ),
        "DoE": DiagonalGaussian(exp.dim),
    }


def run_once(exp: Experiment, rep: int, device: torch.device, trace: bool, progress=None):
    torch.manual_seed(rep)
    gen = torch.Generator().manual_seed(1000 + rep)
    rng = np.random.default_rng(1000 + rep)
    make = (
        (lambda var: GaussianSource(exp.dim, var, gen))
        if exp.kind == "gaussian"
        else (lambda var: TriangleMixture(exp.components, exp.dim, rng))
    )
    source = make(1.0)
    models = {k: m.to(device) for k, m in build_models(exp, source.sample(exp.modes)).items()}
    opts = {k: torch.optim.Adam(m.parameters(), lr=exp.lr) for k, m in models.items()}
    total = exp.epochs * exp.iters
    # Official schedule: the covariance is multiplied when (i + 1) % (total // steps + 1) == 0.
    delta = total // exp.cov_steps + 1 if exp.cov_steps > 1 else total + 1
    variance, traces = 1.0, {k: [] for k in [*MODELS, "true"]}
    for i in range(total):
        if (i + 1) % delta == 0:
            variance *= exp.cov_factor
            source = make(variance)
        x = source.sample(exp.batch_size).to(device)
        for name, model in models.items():
            loss = model(x)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            if trace:
                traces[name].append(loss.item())
        if trace:
            traces["true"].append(source.entropy())
        if progress is not None:
            progress.update(1)
    estimates = {}
    with torch.no_grad():
        for name, model in models.items():
            gen_state = (gen.get_state(), rng.bit_generator.state)
            estimates[name] = float(
                np.mean(
                    [
                        float(model(source.sample(exp.batch_size).to(device)))
                        for _ in range(exp.iters)
                    ]
                )
            )
            gen.set_state(gen_state[0])  # every model is scored on the same fresh batches
            rng.bit_generator.state = gen_state[1]
    out = {"true_entropy": source.entropy(), "estimates": estimates}
    if trace:
        out["traces"] = traces
    if exp.kind == "triangle" and exp.dim == 1 and rep == 0:
        grid = np.linspace(-0.2, exp.components + 0.2, 600)
        with torch.no_grad():
            g = torch.as_tensor(grid, dtype=torch.float32, device=device)[:, None]
            out["pdf"] = {"x": grid.tolist(), "true": source.pdf(grid).tolist()}
            for name in ("KNIFE", "Schraudolph"):
                out["pdf"][name] = models[name].log_density(g).exp().cpu().tolist()
    return out


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for name in MODELS:
        err = np.array([r["estimates"][name] - r["true_entropy"] for r in runs])
        summary[name] = dict(
            abs_error_mean=float(np.abs(err).mean()),
            abs_error_std=float(np.abs(err).std()),
            signed_error_mean=float(err.mean()),
            signed_error_std=float(err.std()),
        )
    return summary


def stepdown_levels(run: dict, exp: Experiment) -> list[dict]:
    """Per covariance level: mean training estimate over the level's last 100 steps vs truth."""
    true = np.array(run["traces"]["true"])
    edges = [0, *(np.flatnonzero(np.diff(true)) + 1), len(true)]
    rows = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        lo = max(a, b - 100)
        row = {"steps": [int(a), int(b)], "true_entropy": float(true[a])}
        for name in MODELS:
            row[name] = float(np.mean(run["traces"][name][lo:b]))
        rows.append(row)
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [k for k in results if "summary" in results[k]]
    panels = len(tables) > 0, "stepdown" in results, "pdf" in results.get("triangle1d", {})
    fig, axes = plt.subplots(1, sum(panels), figsize=(5 * sum(panels), 3.6), squeeze=False)
    axes = iter(axes[0])
    if panels[0]:
        ax = next(axes)
        for j, name in enumerate(MODELS):
            s = [results[k]["summary"][name] for k in tables]
            xs = np.arange(len(tables)) + (j - 1) * 0.25
            ax.bar(
                xs,
                [r["abs_error_mean"] for r in s],
                0.25,
                yerr=[r["abs_error_std"] for r in s],
                label=name,
            )
        ax.set_xticks(range(len(tables)), tables, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("|estimate - h| (nats)")
        ax.legend(fontsize=7)
    if panels[1]:
        ax, tr = next(axes), results["stepdown"]["runs"][0]["traces"]
        for name in MODELS:
            ax.plot(tr[name], lw=0.6, label=name)
        ax.plot(tr["true"], color="black", lw=1, label="true h")
        ax.set_ylim(min(tr["true"]) - 20, max(tr["true"]) + 40)
        ax.set_xlabel("iteration")
        ax.set_title("d = 64, covariance x 0.5 per level", fontsize=9)
        ax.legend(fontsize=7)
    if panels[2]:
        ax, pdf = next(axes), results["triangle1d"]["pdf"]
        ax.plot(pdf["x"], pdf["true"], color="black", lw=1, label="true pdf")
        for name in ("KNIFE", "Schraudolph"):
            ax.plot(pdf["x"], pdf[name], lw=0.8, label=name)
        ax.set_title("1-D mixture of 10 triangles", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    p.add_argument("--reps", type=int, help="repetitions (default: the paper's per experiment)")
    p.add_argument("--iters", type=int, help="iterations per epoch (default: the paper's)")
    p.add_argument("--epochs", type=int, help="epochs (default: the paper's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", nargs="+", type=Path, help="combine the --out dirs of earlier runs")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    device = torch.device(args.device)
    results = {"command": " ".join(sys.argv), "device": args.device}
    for key in args.experiments:
        exp = EXPERIMENTS[key]
        exp = replace(
            exp, **{k: v for k, v in vars(args).items() if k in ("reps", "iters", "epochs") and v}
        )
        t0, runs = time.time(), []
        with tqdm(total=exp.reps * exp.epochs * exp.iters, desc=key, mininterval=5) as bar:
            for rep in range(exp.reps):
                runs.append(run_once(exp, rep, device, trace=key == "stepdown", progress=bar))
        entry = {"config": asdict(exp), "runs": runs, "seconds": time.time() - t0}
        entry["analytic_entropy"] = [r["true_entropy"] for r in runs]
        if key == "stepdown":
            entry["levels"] = stepdown_levels(runs[0], exp)
        else:
            entry["summary"] = summarize(runs)
        if "pdf" in runs[0]:
            entry["pdf"] = runs[0].pop("pdf")
        results[key] = entry
        print(key, json.dumps(entry.get("summary", entry.get("levels")), indent=1))
        write(results, args.out)  # after every experiment: a long run keeps what it finished
    return results


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "entropy_estimation.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "entropy_estimation.png")


def merge(dirs: list[Path], out: Path) -> dict:
    """One JSON/PNG from runs of different experiments (e.g. run in parallel processes)."""
    results = {"merged_from": []}
    for d in dirs:
        part = json.loads((d / "entropy_estimation.json").read_text())
        results["merged_from"].append(
            {"command": part.pop("command"), "device": part.pop("device")}
        )
        results.update(part)
    write(results, out)
    return results


if __name__ == "__main__":
    main()
