"""Our MI estimators on the "Beyond Normal" tasks (Czyż et al., NeurIPS 2023), beside bmi's own.

bmi (PyPI ``benchmark-mi``) samples each task and knows its true MI; its pins (jax, and numpy,
pandas and pydantic below 2; ``benchmarks/requirements-bmi.txt``) conflict with this project's
environment, so the benchmark runs in two environments:

1. ``generate`` (bmi's environment) samples every task and seed, runs bmi's own KSG (k = 5) and
   CCA estimators on the same samples and saves ``samples/<task>__s<seed>.npz`` (x, y, true MI)
   plus ``baselines.json``::

       python -m venv bmi-venv && bmi-venv/bin/pip install -r benchmarks/requirements-bmi.txt
       bmi-venv/bin/python benchmarks/mi_beyond_normal.py generate --out runs/bmi

   and bmi's own neural estimators (InfoNCE, NWJ, Donsker-Varadhan, MINE at bmi's defaults: a
   concat MLP critic with (16, 8) hidden units, Adam 0.1, batch 256, held-out half, a test every
   250 steps, early stopping, at most 10 000 steps) on the same samples, ``baselines_neural.json``::

       bmi-venv/bin/python benchmarks/mi_beyond_normal.py neural --out runs/bmi
       bmi-venv/bin/python benchmarks/mi_beyond_normal.py neural --out runs/bmi \
           --preprocess copula --tasks student-identity-2-2-1 student-identity-5-5-2 \
           asinh-student-identity-5-5-2 half_cube-multinormal-sparse-5-5-2-2.0
           # the same estimators on the normal scores ours train on: baselines_neural_copula.json

2. ``run`` (this project's environment) reads those samples, calls ``infossl.mi.estimate`` for
   each estimator and writes ``mi_beyond_normal.json`` (every task, seed, estimator, estimate,
   stderr, best step, seconds), ``mi_beyond_normal.md`` (table + error summary) and
   ``mi_beyond_normal.png`` (estimate vs true MI per task); its defaults are the committed
   table's settings (seeds 0-2, 5 estimators, 64/16-wide critics, patience 4, copula; the anchor
   and weight decay are ``estimate``'s)::

       python benchmarks/mi_beyond_normal.py run --out runs/bmi

``report --out DIR [--baselines DIR2]`` redraws the table and PNG from the JSON files, with the
bmi baselines read from DIR2 (the committed runs without the anchor or the weight decay share
the main table's).

The task list is taken from bmi's ``BENCHMARK_TASKS`` (``bmi/benchmark/task_list.py``) plus one
high-MI task built with bmi's own ``task_multinormal_sparse`` (5 interacting pairs, strength 4).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# bmi task ids (bmi.benchmark.BENCHMARK_TASKS keys); the last is built from bmi's factory.
TASKS = [
    "1v1-additive-0.1",
    "multinormal-dense-5-5-0.5",
    "multinormal-dense-25-25-0.5",
    "multinormal-sparse-3-3-2-2.0",
    "multinormal-sparse-5-5-2-2.0",
    "multinormal-sparse-25-25-2-2.0",
    "student-identity-2-2-1",
    "student-identity-5-5-2",
    "normal_cdf-multinormal-sparse-5-5-2-2.0",
    "half_cube-multinormal-sparse-5-5-2-2.0",
    "half_cube-multinormal-sparse-25-25-2-2.0",
    "spiral-multinormal-sparse-5-5-2-2.0",
    "spiral-multinormal-sparse-25-25-2-2.0",
    "asinh-student-identity-5-5-2",
    "multinormal-sparse-5-5-5-4.0",  # high MI (5.42 nats)
]
# The committed table's seeds; the run's defaults below are its settings too, so the commands in
# the module docstring reproduce it.
SEEDS = [0, 1, 2]


def _bmi_task(task_id: str):
    from bmi.benchmark import BENCHMARK_TASKS
    from bmi.benchmark.tasks import multinormal

    if task_id in BENCHMARK_TASKS:
        return BENCHMARK_TASKS[task_id]
    if task_id == "multinormal-sparse-5-5-5-4.0":
        return multinormal.task_multinormal_sparse(5, 5, n_interacting=5, strength=4.0)
    raise SystemExit(f"unknown bmi task {task_id!r}")


def generate(args) -> None:
    """Samples + bmi's KSG and CCA on them (run in bmi's environment)."""
    from importlib.metadata import version

    import bmi

    out = Path(args.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    baselines = []
    for task_id in args.tasks:
        task = _bmi_task(task_id)
        for seed in args.seeds:
            x, y = task.sample(args.n, seed=seed)
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            np.savez_compressed(
                out / "samples" / f"{task_id}__s{seed}.npz",
                x=x,
                y=y,
                true_mi=task.mutual_information,
                name=task.name,
            )
            for name, est in (
                ("bmi KSG (k=5)", bmi.estimators.KSGEnsembleFirstEstimator(neighborhoods=(5,))),
                ("bmi CCA", bmi.estimators.CCAMutualInformationEstimator()),
            ):
                t0 = time.time()
                value = float(est.estimate(x, y))
                baselines.append(
                    dict(
                        task=task_id,
                        name=task.name,
                        true_mi=task.mutual_information,
                        seed=seed,
                        estimator=name,
                        estimate=value,
                        seconds=time.time() - t0,
                    )
                )
                print(f"{task_id} s{seed} {name}: {value:.3f} (true {task.mutual_information:.3f})")
    meta = dict(command=" ".join(sys.argv), n=args.n, seeds=args.seeds, bmi=version("benchmark-mi"))
    (out / "baselines.json").write_text(json.dumps({**meta, "results": baselines}, indent=1))


BMI_NEURAL = {
    "bmi InfoNCE": "InfoNCEEstimator",
    "bmi NWJ": "NWJEstimator",
    "bmi DV": "DonskerVaradhanEstimator",
    "bmi MINE": "MINEEstimator",
}


def neural(args) -> None:
    """bmi's neural estimators at bmi's defaults on the saved samples (run in bmi's environment);
    JSON after each run, ``--resume`` skips what it holds. ``--preprocess copula`` first maps each
    column to normal scores as ``infossl.mi.estimate(preprocess="copula")`` does (a numpy/scipy
    module, importable without torch), labelled "bmi ... (copula)", in its own JSON file."""
    from importlib.metadata import version

    import bmi

    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from infossl.mi.inputs import preprocess_columns

    out = Path(args.out)
    copula = args.preprocess == "copula"
    path = out / ("baselines_neural_copula.json" if copula else "baselines_neural.json")
    results = json.loads(path.read_text())["results"] if args.resume and path.exists() else []
    done = {(r["task"], r["seed"], r["estimator"]) for r in results}
    meta = dict(command=" ".join(sys.argv), seeds=args.seeds, bmi=version("benchmark-mi"))
    for task_id in args.tasks:
        for seed in args.seeds:
            x, y, true_mi, name = _load_samples(out, task_id, seed)
            if copula:  # the very transform infossl.mi.estimate applies
                x = preprocess_columns(x, "copula", "x")
                y = preprocess_columns(y, "copula", "y")
            for label, cls in BMI_NEURAL.items():
                label += " (copula)" if copula else ""
                if (task_id, seed, label) in done:
                    continue
                t0 = time.time()
                estimator = getattr(bmi.estimators, cls)(verbose=False, seed=seed)
                res = estimator.estimate_with_info(x, y)
                info = res.additional_information
                results.append(
                    dict(
                        task=task_id,
                        name=name,
                        true_mi=true_mi,
                        seed=seed,
                        estimator=label,
                        estimate=float(res.mi_estimate),
                        training_steps=info.get("n_training_steps"),
                        seconds=time.time() - t0,
                    )
                )
                print(f"{task_id} s{seed} {label}: {res.mi_estimate:.3f} (true {true_mi:.3f})")
                path.write_text(json.dumps({**meta, "results": results}, indent=1))


def _baselines(out: Path) -> list[dict]:
    """bmi's KSG and CCA, plus its neural estimators where ``neural`` has run
    (``baselines_neural.json``; ``baselines_neural_copula.json`` with ``--preprocess copula``)."""
    rows = json.loads((out / "baselines.json").read_text())["results"]
    for path in sorted(out.glob("baselines_neural*.json")):
        rows += json.loads(path.read_text())["results"]
    return rows


def _load_samples(out: Path, task: str, seed: int):
    with np.load(out / "samples" / f"{task}__s{seed}.npz") as z:
        return z["x"], z["y"], float(z["true_mi"]), str(z["name"])


def run(args) -> None:
    """Our estimators through ``infossl.mi.estimate`` on the saved samples; JSON after each run so
    a partial run still reports what it measured."""
    import torch

    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from infossl.mi import estimate
    from infossl.mi.inputs import anchor_keyword

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    baselines = json.loads((out / "baselines.json").read_text())
    path = out / "mi_beyond_normal.json"
    results = json.loads(path.read_text())["results"] if args.resume and path.exists() else []
    done = {(r["task"], r["seed"], r["estimator"]) for r in results}
    options = dict(
        max_steps=args.steps,
        eval_every=args.eval_every,
        patience=args.patience,
        hidden_dim=args.hidden_dim,
        embed_dim=args.embed_dim,
        batch_size=args.batch_size,
        preprocess=args.preprocess,
        weight_decay=args.weight_decay,
        device=args.device,
        **anchor_keyword(args.anchor),
    )
    for task in args.tasks:
        for seed in args.seeds:
            x, y, true_mi, name = _load_samples(out, task, seed)
            for label in args.estimators:
                if (task, seed, label) in done:
                    continue
                res = estimate(x, y, label, seed=seed, **options)
                results.append(
                    dict(
                        task=task,
                        name=name,
                        true_mi=true_mi,
                        seed=seed,
                        estimator=label,
                        estimate=res.estimate,
                        stderr=res.stderr,
                        ci=list(res.ci),
                        best_step=res.best_step,
                        last_step=res.curve["step"][-1],
                        final_heldout=res.curve["heldout"][-1],
                        seconds=res.seconds,
                    )
                )
                print(
                    f"{task} s{seed} {label}: {res.estimate:.3f} +- {res.stderr:.3f} "
                    f"(true {true_mi:.3f}) best step {res.best_step}, {res.seconds:.0f}s",
                    flush=True,
                )
                meta = dict(command=" ".join(sys.argv), settings=options, bmi_meta=baselines)
                meta["bmi_meta"] = {k: v for k, v in baselines.items() if k != "results"}
                path.write_text(json.dumps({**meta, "results": results}, indent=1))
    write_report(out, out)


def _summary(rows: list[dict]) -> dict:
    """Per (task, estimator): mean and std over seeds, mean bootstrap stderr."""
    table: dict = {}
    for r in rows:
        table.setdefault((r["task"], r["estimator"]), []).append(r)
    out = {}
    for key, rs in table.items():
        est = np.array([r["estimate"] for r in rs], dtype=float)
        se = [r.get("stderr", float("nan")) for r in rs]
        out[key] = dict(
            true_mi=rs[0]["true_mi"],
            name=rs[0]["name"],
            mean=float(np.mean(est)),
            seed_std=float(np.std(est)) if len(est) > 1 else float("nan"),
            stderr=float(np.mean(se)),
            n=len(rs),
            nonfinite=int((~np.isfinite(est)).sum()),
        )
    return out


def render(out: Path, baselines: Path | None = None) -> tuple[str, dict, list[str], list[str]]:
    """The markdown table and error summary of ``out``'s results beside the bmi baselines in
    ``baselines`` (default ``out``), with the per-(task, estimator) summary, task order and
    estimator names the PNG uses. The baselines count only on the tasks and seeds ours ran on, so
    the error summary compares like with like."""
    ours = json.loads((out / "mi_beyond_normal.json").read_text())["results"]
    ran = {(r["task"], r["seed"]) for r in ours}
    base = [r for r in _baselines(baselines or out) if (r["task"], r["seed"]) in ran]
    summ = _summary(ours + base)
    tasks = [t for t in TASKS if any(k[0] == t for k in ran)]
    names = list(dict.fromkeys(r["estimator"] for r in ours))
    names += list(dict.fromkeys(r["estimator"] for r in base))
    head = "| task | true MI | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for t in tasks:
        cells = []
        for n in names:
            s = summ.get((t, n))
            if s is None:
                cells.append("")
            elif n.startswith("bmi"):
                cells.append(f"{s['mean']:.3f}")
            else:
                cells.append(f"{s['mean']:.3f} ± {s['stderr']:.3f}")
        true_mi = next(summ[k]["true_mi"] for k in summ if k[0] == t)
        name = next(summ[k]["name"] for k in summ if k[0] == t)
        lines.append(f"| {name} | {true_mi:.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| estimator | tasks | mean abs. error | within 10 % | non-finite |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        rows = [summ[(t, n)] for t in tasks if (t, n) in summ]
        err = np.array([abs(r["mean"] - r["true_mi"]) for r in rows])
        within = sum(abs(r["mean"] - r["true_mi"]) <= 0.1 * r["true_mi"] for r in rows)
        bad = sum(r["nonfinite"] for r in rows)
        mae = float(np.nanmean(err)) if len(err) else float("nan")
        lines.append(f"| {n} | {len(rows)} | {mae:.3f} | {within} | {bad} |")
    return "\n".join(lines) + "\n", summ, tasks, names


def write_report(out: Path, baselines: Path) -> None:
    """``mi_beyond_normal.md`` and ``.png`` in ``out``, from ``render``."""
    md, summ, tasks, names = render(out, baselines)
    (out / "mi_beyond_normal.md").write_text(md)
    print(md, end="")
    _plot(summ, tasks, names, out / "mi_beyond_normal.png")


def report(args) -> None:
    write_report(Path(args.out), Path(args.baselines or args.out))


def _plot(summ, tasks, names, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(10, 0.9 * len(tasks)), 5))
    width = 0.85 / len(names)
    xs = np.arange(len(tasks))
    colors = plt.get_cmap("tab20").colors
    for k, n in enumerate(names):
        mean = [summ.get((t, n), {}).get("mean", np.nan) for t in tasks]
        err = [summ.get((t, n), {}).get("stderr", np.nan) for t in tasks]
        err = [0 if not np.isfinite(e) else 2 * e for e in err]
        ax.bar(
            xs + (k - len(names) / 2 + 0.5) * width,
            mean,
            width,
            yerr=err,
            label=n,
            color=colors[k % len(colors)],
            hatch="//" if n.startswith("bmi") else None,  # bmi's estimators hatched, ours plain
            edgecolor="white",
            linewidth=0,
        )
    true = [next(summ[k]["true_mi"] for k in summ if k[0] == t) for t in tasks]
    labels = [next(summ[k]["name"] for k in summ if k[0] == t) for t in tasks]
    ax.scatter(xs, true, color="black", marker="_", s=600, zorder=5, label="true MI")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=50, ha="right", fontsize=7)
    ax.set_ylabel("MI estimate (nats), ±2 bootstrap s.e. for ours")
    ax.set_ylim(-0.5, max(true) + 1)
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="bmi's environment: samples + bmi KSG/CCA")
    g.add_argument("--tasks", nargs="+", default=TASKS)
    g.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    g.add_argument("--n", type=int, default=5000)
    g.add_argument("--out", required=True)
    n = sub.add_parser("neural", help="bmi's environment: bmi's neural estimators")
    n.add_argument("--tasks", nargs="+", default=TASKS)
    n.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    n.add_argument("--preprocess", choices=["none", "copula"], default="none")
    n.add_argument("--resume", action="store_true", help="skip runs already in the JSON")
    n.add_argument("--out", required=True)
    r = sub.add_parser("run", help="this project's environment: infossl.mi.estimate per task")
    r.add_argument("--tasks", nargs="+", default=TASKS)
    r.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    r.add_argument("--estimators", nargs="+", default=["infonce", "smile", "nwj", "flo", "knife"])
    r.add_argument(
        "--steps", type=int, default=5000, help="most steps (early stopping ends sooner)"
    )
    r.add_argument("--eval-every", type=int, default=100)
    r.add_argument("--patience", type=int, default=4)
    r.add_argument("--hidden-dim", type=int, default=64)
    r.add_argument("--embed-dim", type=int, default=16)
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--preprocess", default="copula")
    r.add_argument("--weight-decay", type=float, help="AdamW's; default: estimate's")
    r.add_argument("--anchor", choices=["gaussian", "none"], help="default: estimate's")
    r.add_argument("--device", default="cpu", help="where estimate trains (cpu, cuda, ...)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--resume", action="store_true", help="skip runs already in the JSON")
    r.add_argument("--out", required=True)
    q = sub.add_parser("report", help="table + PNG from the JSON files")
    q.add_argument("--out", required=True)
    q.add_argument("--baselines", help="folder of bmi's baselines*.json (default: --out)")
    args = p.parse_args(argv)
    {"generate": generate, "neural": neural, "run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
