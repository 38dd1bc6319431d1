"""The same SimCLR job run by InfoSSL's train.py, by solo-learn and by a lightly-style module.

The job: ResNet-18 with the CIFAR stem (3x3/1 convolution, no max-pool), 32 px CIFAR-like
images held in memory (``_shared.synthetic_arrays``, written once to an ``.npy`` file that every
framework loads into memory and serves as PIL images, as torchvision's CIFAR does: nobody
decodes files), two views of the SimCLR CIFAR augmentation (crop 0.08-1, jitter 0.8/0.8/0.8/0.2
with p 0.8, grayscale 0.2, blur 0.5, flip), a 2048-256 projector, NT-Xent at temperature 0.2,
an online linear probe, LARS (lr 0.4 x batch / 256, weight decay 1e-4, none on norms and
biases) with a per-step warm-up + cosine schedule; float32 on the CPU, bf16-mixed on CUDA.
Each framework as its user runs it:

  infossl  ``train.py --method infonce --data cifar10`` (``infossl.cli_train.main``: run
           directory, the Trainer with train.py's callbacks, TensorBoard logging); the dataset
           is swapped for the in-memory images
  solo     solo-learn's ``main_pretrain.py`` with its ``scripts/pretrain/cifar/simclr.yaml``,
           in its own environment (``--solo-python``: an interpreter that imports solo-learn's
           pinned ``lightning``, ``--solo-root``: its source tree); overrides: batch, workers,
           accelerator, precision, one device, no DDP, wandb / checkpoints / auto-resume off,
           no sanity validation; torchvision's CIFAR10 class is swapped for the images
  lightly  a LightningModule as lightly's documentation and benchmarks write one
           (``NTXentLoss``, ``SimCLRProjectionHead``, ``SimCLRTransform``, lightly's LARS,
           ``OnlineLinearClassifier``, TensorBoard logger), in this interpreter

Every run is its own process (``benchmarks/_versus_child.py``) with the same threads
(``OMP_NUM_THREADS``, ``torch.set_num_threads``), loader workers, batch and steps. The
processes run interleaved in rounds (infossl, solo, lightly, infossl, ...), so a change in the
machine's load hits each framework alike. In each: ``--warmup`` untimed steps, then
``--repeats`` windows of ``--steps`` steps; a round's images/s is its windows' median (all
views of an image count once). Reported per framework: images/s over rounds, the ratio to
InfoSSL per round (same round: median, min, max), time to the first step (process start to
the end of the first optimizer step), peak memory (the main process's peak RSS on the CPU;
``torch.cuda.max_memory_allocated`` on CUDA), the forward GFLOP of the framework's own
backbone for one image (``torch.utils.flop_counter``: the frameworks' CIFAR stems need not do
the same work) and the versions of the packages it imported. A framework that cannot run is reported
``missing`` with the reason, and the others go on. JSON to ``--out``, a Markdown table and
a PNG beside it.

    python benchmarks/versus.py --device cpu --batch-size 32 --workers 1 --threads 2 \\
        --solo-python /path/to/solo-venv/bin/python --solo-root /path/to/solo-learn \\
        --out benchmarks/results/versus_cpu.json
    python benchmarks/versus.py --device cuda --batch-size 256 --workers 8 --steps 20 \\
        --solo-python ... --solo-root ... --out benchmarks/results/versus_cuda.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__:
    from benchmarks import _shared as S
else:
    import _shared as S

FRAMEWORKS = ("infossl", "solo", "lightly")
TITLES = {"infossl": "InfoSSL train.py", "solo": "solo-learn", "lightly": "lightly module"}
CHILD = Path(__file__).resolve().parent / "_versus_child.py"
REPO = CHILD.parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch-size", type=int, help="default: 256 on CUDA, 32 on the CPU")
    p.add_argument("--precision", default="auto", help="auto (bf16-mixed on CUDA, else 32)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers, every framework")
    p.add_argument("--threads", type=int, default=1, help="torch threads, every framework")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps in each run (>= 1)")
    p.add_argument("--steps", type=int, default=3, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=2, help="timed windows per run")
    p.add_argument("--rounds", type=int, default=3, help="runs per framework, interleaved")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--solo-python", help="interpreter of solo-learn's environment")
    p.add_argument("--solo-root", type=Path, help="solo-learn's source tree (main_pretrain.py)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tests: 16 px images, width-1/8 ResNet-9 and a 64-32 projector (solo-learn keeps "
        "its ResNet-18)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        help="folder: torch.profiler tables of each framework's timed steps (first round), "
        "<framework>_profile.txt; their rates include the profiler's overhead",
    )
    p.add_argument("--timeout-s", type=float, default=1800, help="per run")
    p.add_argument("--out", type=Path, required=True, help="JSON file; .md and .png beside it")
    return p


def _solo_problem(args) -> str | None:
    """Why solo-learn cannot run here (None when it can)."""
    if not args.solo_python or not args.solo_root:
        return "--solo-python and --solo-root not given (solo-learn's environment and source)"
    if not (args.solo_root / "main_pretrain.py").is_file():
        return f"no main_pretrain.py in --solo-root {args.solo_root}"
    if not Path(args.solo_python).is_file():
        return f"--solo-python {args.solo_python} does not exist"
    probe = subprocess.run(
        [args.solo_python, "-c", "import lightning, hydra, solo.methods"],
        env={**os.environ, "PYTHONPATH": str(args.solo_root)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if probe.returncode:
        lines = probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"]
        return f"{args.solo_python} cannot import solo-learn: {lines[-1]}"
    return None


def _missing(args, names: list[str]) -> dict[str, str]:
    missing = {}
    if "lightly" in names and importlib.util.find_spec("lightly") is None:
        missing["lightly"] = f"lightly is not installed in {sys.executable}"
    if "solo" in names:
        problem = _solo_problem(args)
        if problem:
            missing["solo"] = problem
    return missing


def _run_child(name: str, spec: dict, args, work: Path, round_: int) -> dict:
    spec = {**spec, "framework": name, "out": str(work / f"{name}_{round_}.json")}
    if args.profile and round_ == 0:
        args.profile.mkdir(parents=True, exist_ok=True)
        spec["profile"] = str(args.profile.resolve() / f"{name}_profile.txt")
    spec_file = work / f"{name}_{round_}_spec.json"
    log = work / f"{name}_{round_}.log"
    threads = str(spec["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if name == "solo":
        python, env["PYTHONPATH"] = args.solo_python, str(args.solo_root)
    else:  # this checkout's infossl, not another installed copy
        python, env["PYTHONPATH"] = sys.executable, str(REPO)
    load = os.getloadavg()[0]  # the machine's load as this run starts (other work included)
    spec["t0"] = time.time()
    spec_file.write_text(json.dumps(spec))
    with log.open("w") as out:
        try:
            code = subprocess.run(
                [python, str(CHILD), str(spec_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=args.timeout_s,
            ).returncode
        except subprocess.TimeoutExpired:
            reason = f"no result within {args.timeout_s:.0f} s"
            return {"status": "failed", "reason": reason, "load_avg_1m": load}
    wall = time.time() - spec["t0"]
    if code or not Path(spec["out"]).is_file():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        reason = (lines or [f"exit status {code}"])[-1][-300:]
        return {"status": "failed", "reason": reason, "load_avg_1m": load}
    result = json.loads(Path(spec["out"]).read_text())
    rates = result.pop("windows")
    return {
        "status": "ok",
        "images_per_s": statistics.median(rates),
        "windows": rates,
        "wall_s": wall,
        "load_avg_1m": load,
        **result,
    }


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def aggregate(rounds: dict[str, list[dict]]) -> dict:
    """Per framework: images/s over its rounds, the per-round ratio to InfoSSL (rounds where
    both ran), time to the first step and peak memory."""
    ours = rounds.get("infossl", [])
    out = {}
    for name, runs in rounds.items():
        done = [r for r in runs if r["status"] == "ok"]
        if not done:
            out[name] = {"status": "failed", "reason": runs[0]["reason"] if runs else "no run"}
            continue
        entry = {
            "status": "ok",
            "rounds": len(done),
            "images_per_s": S.summary([r["images_per_s"] for r in done]),
            "first_step_s": _spread([r["first_step_s"] for r in done]),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in done),
        }
        for key in ("backbone_gflop_per_image", "versions"):  # the same in every round
            if key in done[0]:
                entry[key] = done[0][key]
        if "peak_cuda_mib" in done[0]:
            entry["peak_cuda_mib"] = max(r["peak_cuda_mib"] for r in done)
        pairs = [
            (theirs["images_per_s"], mine["images_per_s"])
            for theirs, mine in zip(runs, ours, strict=False)
            if theirs["status"] == "ok" and mine["status"] == "ok"
        ]
        if pairs:
            ratio = S.paired_speedup([t for t, _ in pairs], [m for _, m in pairs])
            entry["ratio_to_infossl"] = {**ratio, "per_round": [t / m for t, m in pairs]}
        out[name] = entry
    return out


def _refuse(message: str) -> None:
    print(f"versus.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(args, argv: list[str]) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        _refuse("--device cuda but torch sees no CUDA device")
    names = args.frameworks.split(",")
    if set(names) - set(FRAMEWORKS) or "infossl" not in names:
        _refuse(f"--frameworks takes infossl plus any of solo, lightly, not {args.frameworks}")
    # The first window starts at the end of a warm-up step (never at process start).
    if min(args.warmup, args.steps, args.repeats, args.rounds, args.threads) < 1:
        _refuse("--warmup, --steps, --repeats, --rounds and --threads must be at least 1")
    batch = args.batch_size or (256 if device.type == "cuda" else 32)
    precision = args.precision
    if precision == "auto":
        precision = "bf16-mixed" if device.type == "cuda" else "32"
    size = 16 if args.tiny else 32
    total = args.warmup + args.steps * args.repeats
    missing = _missing(args, names)
    running = [n for n in names if n not in missing]
    torch.set_num_threads(args.threads)
    result = {
        "machine": S.machine_info(device),
        "config": {
            "device": args.device,
            "backbone": "resnet-9 width 1/8 (solo-learn: resnet18)" if args.tiny else "resnet18",
            "image_size": size,
            "batch_size": batch,
            "views": 2,
            "precision": precision,
            "workers": args.workers,
            "threads": args.threads,
            "warmup": args.warmup,
            "steps": args.steps,
            "repeats": args.repeats,
            "rounds": args.rounds,
            "order": running,
            "command": " ".join(["python", "benchmarks/versus.py", *argv]),
        },
        "missing": {n: {"status": "missing", "reason": r} for n, r in missing.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = work / "images.npy"
        # One epoch holds every step (no epoch end inside the measurement); one batch extra.
        np.save(images, S.synthetic_arrays(batch * (total + 1), size))
        spec = {
            "images": str(images),
            "batch": batch,
            "workers": args.workers,
            "threads": args.threads,
            "device": args.device,
            "precision": precision,
            "warmup": args.warmup,
            "steps": args.steps,
            "repeats": args.repeats,
            "tiny": args.tiny,
            "solo_root": str(args.solo_root) if args.solo_root else None,
        }
        rounds = {n: [] for n in running}
        for r in range(args.rounds):
            for name in running:
                run_ = _run_child(name, spec, args, work, r)
                rounds[name].append({"round": r, **run_})
                print(f"round {r} {name}: {_line(run_)}", flush=True)
    result["rounds"] = rounds
    result["frameworks"] = {**aggregate(rounds), **result["missing"]}
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    return result


def _line(run_: dict) -> str:
    if run_["status"] != "ok":
        return f"failed: {run_['reason']}"
    return (
        f"{run_['images_per_s']:.1f} images/s, first step {run_['first_step_s']:.1f} s, "
        f"peak RSS {run_['peak_rss_mib']:.0f} MiB"
    )


def table(result: dict) -> str:
    c, m = result["config"], result["machine"]
    loads = [r["load_avg_1m"] for runs in result["rounds"].values() for r in runs]
    memory = "peak CUDA MiB" if c["device"] == "cuda" else "peak RSS MiB"
    lines = [
        f"SimCLR {c['backbone']} {c['image_size']}px batch {c['batch_size']} x{c['views']} "
        f"views, {c['precision']}, {c['workers']} loader worker(s), {c['threads']} thread(s), "
        f"device {c['device']}; {c['warmup']} warm-up + {c['repeats']} x {c['steps']} timed "
        f"steps per run, {c['rounds']} interleaved rounds",
        f"{m['cpu']} ({m['cpu_count']} cores){', ' + m['gpu'] if 'gpu' in m else ''}, torch "
        f"{m['torch']}; 1-minute load average {m['load_avg_start'][0]:.2f} at the start, "
        f"{m['load_avg_end'][0]:.2f} at the end, {min(loads, default=0):.2f}-"
        f"{max(loads, default=0):.2f} as the runs started",
        "",
        f"| framework | images/s (median of rounds) | min | max | / InfoSSL per round: median "
        f"(min, max) | first step s (median) | {memory} | backbone GFLOP / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in result["frameworks"].items():
        title = TITLES[name]
        if f["status"] != "ok":
            lines.append(f"| {title} | {f['status']}: {f['reason']} | | | | | | |")
            continue
        ips, ratio = f["images_per_s"], f.get("ratio_to_infossl")
        ratio_text = (
            f"{ratio['median']:.3f} ({ratio['min']:.3f}, {ratio['max']:.3f})" if ratio else "-"
        )
        mem = f.get("peak_cuda_mib", f["peak_rss_mib"])
        gflop = f.get("backbone_gflop_per_image")
        lines.append(
            f"| {title} | {ips['median']:.1f} | {ips['min']:.1f} | {ips['max']:.1f} | "
            f"{ratio_text} | {f['first_step_s']['median']:.1f} | {mem:.0f} | "
            f"{'-' if gflop is None else f'{gflop:.3f}'} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = {n: r for n, r in result["rounds"].items() if any(x["status"] == "ok" for x in r)}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, label in zip(
        axes,
        ("images_per_s", "first_step_s", "peak_rss_mib"),
        ("images/s (steady state)", "time to first step (s)", "peak RSS (MiB)"),
        strict=True,
    ):
        for i, runs in enumerate(ran.values()):
            values = [x[key] for x in runs if x["status"] == "ok"]
            ax.bar(i, statistics.median(values), color=f"C{i}", alpha=0.6)
            ax.plot([i] * len(values), values, "k.", ms=5)
        ax.set_xticks(range(len(ran)), [TITLES[n] for n in ran], fontsize=8)
        ax.set_title(label, fontsize=9)
    c = result["config"]
    fig.suptitle(
        f"SimCLR {c['backbone']} batch {c['batch_size']}, {c['device']}, {c['precision']}: "
        "bars = median of rounds, dots = rounds",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    result = run(args, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    args.out.with_suffix(".md").write_text(text + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(text)
    print(f"wrote {args.out} (+ .md, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
