"""What the preemption check costs per training step under DDP (2 CPU processes, gloo).

Times the host-side work that runs at every step boundary, without a model, so the difference
is the check itself:

  before  Lightning 2.6's per-step SIGTERM broadcast (``_TrainingEpochLoop.
          _broadcast_sigterm_tensor``: broadcast + ``.item()``) and PreemptionCheckpoint
          deciding every step (``reduce_boolean_decision``: all-reduce + ``.item()``)
  after   PreemptionCheckpoint as train.py installs it: Lightning's broadcast off, one decision
          every ``log_every_n_steps`` (10) steps

Both use the real callback and Lightning's real broadcast function; the strategy's
``reduce_boolean_decision`` is ParallelStrategy's (an int tensor summed over the processes,
then compared on the host). Writes benchmarks/results/preemption_sync.{json,md,png}.

    python benchmarks/preemption_sync.py --steps 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infossl.lightning_compat import lightning_sigterm_broadcast  # noqa: E402
from infossl.reliability.preemption import PreemptionCheckpoint  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


class _GlooStrategy:
    root_device = torch.device("cpu")

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        value = torch.tensor(int(decision), device=self.root_device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return bool(value == dist.get_world_size()) if all else bool(value > 0)


def _time(setting: str, steps: int, every: int) -> float:
    """Seconds per step of the check in ``setting`` (before | after)."""
    strategy = _GlooStrategy()
    trainer = SimpleNamespace(world_size=2, strategy=strategy, received_sigterm=False)
    loop = SimpleNamespace(trainer=trainer)
    callback = PreemptionCheckpoint(Path(tempfile.gettempdir()) / "unused.ckpt", every)
    dist.barrier()
    start = time.perf_counter()
    for batch_idx in range(steps):
        if setting == "before":
            lightning_sigterm_broadcast(loop)
        callback.on_train_batch_end(trainer, None, None, None, batch_idx)
    dist.barrier()
    return (time.perf_counter() - start) / steps


def _worker(rank: int, port: int, steps: int, repeats: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    results = {"before": [], "after": []}
    for _ in range(repeats):
        results["before"].append(_time("before", steps, every=1))
        results["after"].append(_time("after", steps, every=10))
    if rank == 0:
        queue.put(results)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--load", default="", help="what else ran on the machine, for the record")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(r, args.port, args.steps, args.repeats, queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = queue.get(timeout=600)
    for p in procs:
        p.join()
    summary = {
        k: {"median_us_per_step": 1e6 * statistics.median(v), "runs_us": [1e6 * x for x in v]}
        for k, v in results.items()
    }
    record = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "load": args.load,
        "torch": torch.__version__,
        "processes": 2,
        "backend": "gloo",
        "steps": args.steps,
        "repeats": args.repeats,
        "every_n_steps_after": 10,
        "results": summary,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "preemption_sync.json").write_text(json.dumps(record, indent=1) + "\n")
    rows = [
        "| setting | collectives per 10 steps | median µs per step | runs (µs) |",
        "|---|---|---|---|",
        "| before: Lightning broadcast + decision every step | 20 | "
        f"{summary['before']['median_us_per_step']:.1f} | "
        + ", ".join(f"{x:.1f}" for x in summary["before"]["runs_us"])
        + " |",
        "| after: decision every 10 steps | 1 | "
        f"{summary['after']['median_us_per_step']:.1f} | "
        + ", ".join(f"{x:.1f}" for x in summary["after"]["runs_us"])
        + " |",
    ]
    (OUT / "preemption_sync.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    names = ["before", "after"]
    ax.bar(names, [summary[n]["median_us_per_step"] for n in names], color=["#c44", "#4a4"])
    for i, n in enumerate(names):
        ax.scatter([i] * len(summary[n]["runs_us"]), summary[n]["runs_us"], color="k", s=8)
    ax.set_ylabel("µs per step (host side)")
    ax.set_title("Preemption check, 2 processes, gloo (CPU)")
    fig.tight_layout()
    fig.savefig(OUT / "preemption_sync.png", dpi=120)


if __name__ == "__main__":
    main()
