"""Our MI estimators on the "Beyond Normal" tasks (Czyż et al., NeurIPS 2023), beside bmi's KSG/CCA.

bmi (PyPI ``benchmark-mi``) samples each task and knows its true MI; its JAX pins conflict with
this project's environment, so the benchmark runs in two environments:

1. ``generate`` (bmi's environment) samples every task and seed, runs bmi's own KSG (k = 5) and
   CCA estimators on the same samples and saves ``samples/<task>__s<seed>.npz`` (x, y, true MI)
   plus ``baselines.json``::

       python -m venv /work/bmi-venv && /work/bmi-venv/bin/pip install benchmark-mi \
           "jax==0.4.30" "jaxlib==0.4.30"    # bmi 0.1.3's equinox needs jax < 0.4.34
       /work/bmi-venv/bin/python benchmarks/mi_beyond_normal.py generate --out runs/bmi

2. ``run`` (this project's environment) reads those samples, calls ``infossl.mi.estimate`` for
   each estimator and writes ``mi_beyond_normal.json`` (every task, seed, estimator, estimate,
   stderr, best step, seconds), ``mi_beyond_normal.md`` (table + error summary) and
   ``mi_beyond_normal.png`` (estimate vs true MI per task)::

       python benchmarks/mi_beyond_normal.py run --out runs/bmi --estimators smile infonce knife

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="bmi's environment: samples + bmi KSG/CCA")
    g.add_argument("--tasks", nargs="+", default=TASKS)
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    g.add_argument("--n", type=int, default=5000)
    g.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "generate":
        generate(args)


if __name__ == "__main__":
    main()
