"""Every SSL method, one protocol: pretrain with the project's configs, evaluate, tabulate.

Each selected method is pretrained by ``train.py`` (called in this process, same flags and config
resolution) for every seed, then measured by ``eval_linear.py``'s protocols: the offline linear
probe, weighted kNN (k = 20 and 200), and the effective rank (RankMe) and covariance rank of the
validation backbone features; the same two ranks of the projector embeddings are added here.
``random-init`` evaluates the same backbone untrained, one per seed.

    python benchmarks/ssl_methods.py --out runs/ssl_methods               # digits, CPU
    python benchmarks/ssl_methods.py --out runs/ssl_methods --resume      # continue after a stop
    python benchmarks/ssl_methods.py --data cifar10 --gpus 1 --data-dir ~/data --seeds 0 \
        --out runs/ssl_methods_cifar10      # the papers' backbones and epochs (configs)

``--methods`` takes ``infonce``, ``corinfomax``, ``flo``, ``remine`` (its seven estimators, each
with and without the regularizer) or one ReMINE row: ``remine/ESTIMATOR`` (``loss.reg_weight=0``)
or ``remine/ESTIMATOR+reg`` (the regularizer weight of configs/methods/remine.yaml).

Writes ``results.json`` (every run: row, seed, the resolved config, all metrics, wall time and
status; rewritten after each run), ``table.md`` (mean +- sample std over seeds) and
``rank_vs_accuracy.png``. Status: ``ok``; ``collapsed`` (effective rank of the embeddings or
features below ``diagnostics.collapse_fraction`` x their dimension; counted in the means);
``diverged`` (the loss became NaN/Inf: the last finite checkpoint is evaluated but left out of
the means); ``failed`` (any other error; retried by ``--resume``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infossl.cli import ArgumentParser, run_cli  # noqa: E402
from infossl.errors import UserError  # noqa: E402

# ReMINE's six losses (MINE, SMILE, InfoNCE, NWJ, TUBA, JS). Its contrastive code's "MINE" is the
# in-batch DV bound (experiments_self_contrastive.py, remine = DV + regularizer); Belghazi's
# moving-average MINE is the extra `mine` row.
ESTIMATORS = ("dv", "mine", "smile", "infonce", "nwj", "tuba", "js")  # infossl.losses.mi_bounds
SIMPLE_METHODS = ("infonce", "corinfomax", "flo")
RANDOM_INIT = "random-init"

# The digits budget every method shares (BENCHMARKS.md says why): lightly's CIFAR ResNet-9 at
# 1/8 width on 16 px digits, 4 epochs. Other datasets take backbone and epochs from their configs.
DIGITS_BUDGET = {"backbone": "lightly:resnet-9", "width": 0.125, "epochs": 4}


class Preempted(KeyboardInterrupt):
    """The job was asked to stop (SIGTERM) mid-run: end the benchmark, record nothing."""


@dataclass(frozen=True)
class Row:
    """One line of the table: a method and, for ReMINE, an estimator with or without the reg."""

    method: str
    estimator: str | None = None
    reg: bool | None = None

    @property
    def name(self) -> str:
        if self.method != "remine":
            return self.method
        return f"remine/{self.estimator}{'+reg' if self.reg else ''}"

    def overrides(self) -> list[str]:
        if self.method != "remine":
            return []
        return [f"loss.estimator={self.estimator}"] + ([] if self.reg else ["loss.reg_weight=0"])


def all_rows() -> list[Row]:
    rows = [Row(m) for m in SIMPLE_METHODS]
    return rows + [Row("remine", e, reg) for e in ESTIMATORS for reg in (False, True)]


def parse_rows(names: list[str]) -> list[Row]:
    known = {row.name: row for row in all_rows()}
    rows: list[Row] = []
    for name in names:
        if name == "remine":
            picked = [r for r in all_rows() if r.method == "remine"]
        elif name in known:
            picked = [known[name]]
        else:
            raise UserError(
                f"unknown --methods entry '{name}'; use infonce, corinfomax, flo, remine, "
                f"remine/ESTIMATOR or remine/ESTIMATOR+reg (ESTIMATOR: {', '.join(ESTIMATORS)})"
            )
        rows += [r for r in picked if r not in rows]
    return rows


def build_parser() -> ArgumentParser:
    import argparse

    p = ArgumentParser(
        prog="ssl_methods.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=["infonce", "corinfomax", "flo", "remine"])
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", help="where the dataset lies (train.py --data-dir)")
    p.add_argument("--download", action="store_true", help="download a missing dataset first")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help=f"digits: {DIGITS_BUDGET['epochs']}; else configs")
    p.add_argument("--backbone", help="digits: lightly:resnet-9 at width 0.25; else configs")
    p.add_argument("--batch-size", type=int, help="per device (default: configs)")
    p.add_argument("--num-workers", type=int, help="loader workers (default: configs)")
    p.add_argument("--gpus", type=int, help="N > 0: train on N GPUs, evaluate on one")
    p.add_argument("--out", type=Path, required=True, help="folder for results and runs")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="passed to every run")
    return p


# ---- one run ------------------------------------------------------------------------------------
def run_name(row: Row, seed: int) -> str:
    return f"{row.name.replace('/', '-').replace('+', '-')}-s{seed}"


def train_argv(args, row: Row, seed: int, run_root: Path, name: str, resume: bool) -> list[str]:
    argv = ["--method", row.method, "--data", args.data, "--seed", str(seed)]
    argv += ["--run-dir", str(run_root), "--name", name]
    budget = DIGITS_BUDGET if args.data == "digits" else {}
    backbone = args.backbone or budget.get("backbone")
    epochs = args.epochs or budget.get("epochs")
    if backbone:
        argv += ["--backbone", backbone]
        if not args.backbone and "width" in budget:
            argv.append(f"backbone.width={budget['width']}")
    if epochs:
        argv += ["--epochs", str(epochs)]
    if args.download:
        argv.append("--download")
    for flag in ("data_dir", "batch_size", "num_workers", "gpus"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if resume:
        argv += ["--resume", "auto"]  # a run stopped mid-training continues from last.ckpt
    return argv + row.overrides() + list(args.overrides)


def check_inputs(args, rows: list[Row]) -> None:
    """Resolve every row's config as train.py would, so bad input fails before any run."""
    from infossl import cli_train as train
    from infossl.data.datasets import build_dataset
    from infossl.training import TrainRequest, _resolve

    for row in rows:
        argv = train_argv(args, row, 0, args.out / "runs", "check", resume=False)
        targs = train.build_parser().parse_intermixed_args(argv)
        cfg = _resolve(
            TrainRequest(targs.method, targs.data, None, train.flag_values(targs), targs.overrides)
        ).cfg
        if row.method == "remine" and row.reg and not cfg.loss.reg_weight > 0:
            raise UserError(
                f"{row.name}: loss.reg_weight is {cfg.loss.reg_weight}; the regularized rows "
                "need a positive weight (pass loss.reg_weight=...)"
            )
    # a missing dataset is one line now, not a failed run later
    build_dataset(args.data, args.data_dir or cfg.data.dir, "val", download=args.download)


@contextlib.contextmanager
def quiet(log_path: Path):
    """One run's console output (Lightning's bars, prints, warnings) goes to its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lightning = logging.getLogger("pytorch_lightning")
    level = lightning.level
    with (
        open(log_path, "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        lightning.setLevel(logging.WARNING)
        try:
            yield
        finally:
            lightning.setLevel(level)


def embedding_diagnostics(ckpt: Path, data: str, data_dir: str, device) -> dict:
    """Effective / covariance rank of the projector embeddings of the validation images (eval
    transform, as eval_linear.py's feature diagnostics): the method rebuilt from its checkpoint."""
    import torch
    from torch.utils.data import DataLoader

    from infossl.data.datasets import build_dataset, dataset_info
    from infossl.data.transforms import build_eval_transform
    from infossl.eval import diagnostics
    from infossl.methods import METHODS
    from infossl.reliability.checkpoint_io import load_checkpoint_safely

    checkpoint = load_checkpoint_safely(ckpt)
    cfg = checkpoint["hyper_parameters"]["cfg"]
    model = METHODS[cfg["method"]](cfg, checkpoint["hyper_parameters"]["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    info = dataset_info(data, data_dir)
    size = cfg["data"]["image_size"]
    val = build_dataset(
        data, data_dir, "val", build_eval_transform(size, info["mean"], info["std"])
    )
    chunks = []
    with torch.no_grad():
        for images, *_ in DataLoader(val, batch_size=256):
            chunks.append(model.projector(model.backbone(images.to(device))).float().cpu())
    return diagnostics.metrics(torch.cat(chunks))


CURVES = (
    "train/loss",
    "train/mi_estimate",
    "train/joint_term",
    "train/log_partition",
    "diag/embeddings/effective_rank",
    "diag/features/effective_rank",
    "val/online_top1",
)


def curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """[step, value] of the logged training scalars of interest, from the run's TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[list[float]]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in set(acc.Tags()["scalars"]) & set(CURVES):
            out.setdefault(tag, []).extend([e.step, e.value] for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in sorted(out.items())}


def fraction(cfg: dict) -> float:
    return cfg["diagnostics"]["collapse_fraction"]


def dim(cfg: dict) -> int:
    return cfg["projector"]["output_dim"]


def run_one(args, row: Row | None, seed: int, baseline_ckpt: Path | None) -> dict:
    """Pretrain (unless random-init) and evaluate one (row, seed); never raises on a bad run."""
    from infossl import cli_eval as eval_linear
    from infossl import cli_train as train
    from infossl.eval.diagnostics import is_collapsed
    from infossl.reliability.nonfinite import NonFiniteLossError

    name = run_name(row, seed) if row else f"random-init-s{seed}"
    run_root = args.out / "runs"
    run_dir = run_root / name
    record: dict = {
        "row": row.name if row else RANDOM_INIT,
        "method": row.method if row else None,
        "estimator": row.estimator if row else None,
        "reg": row.reg if row else None,
        "seed": seed,
        "run_dir": str(run_dir),
        "status": "ok",
    }
    started = time.time()
    with quiet(run_dir.with_suffix(".log")):
        try:
            if row is not None:
                t0 = time.time()
                try:
                    train.main(train_argv(args, row, seed, run_root, name, args.resume))
                except NonFiniteLossError as err:
                    record["status"] = "diverged"
                    record["error"] = " ".join(str(err).split())[:500]
                record["train_wall_time_s"] = round(time.time() - t0, 1)
                metrics = run_dir / "metrics.json"
                if metrics.is_file():
                    record["train"] = json.loads(metrics.read_text())
                    if record["train"]["status"] == "preempted":  # SIGTERM: stop, keep last.ckpt
                        raise Preempted(f"{name} was preempted; continue with --resume")
                from infossl import config as C

                record["config"] = C.to_plain(C.stored_config(run_dir / "config.yaml"))
                record["curves"] = curves(run_dir)
                ckpt = run_dir / "checkpoints" / "last.ckpt"
            else:
                ckpt = baseline_ckpt
            if ckpt is None or not ckpt.is_file():
                raise RuntimeError("no checkpoint to evaluate")
            out = run_dir / "eval" / f"{args.data}_linear.json"
            eval_argv = ["--ckpt", str(ckpt), "--out", str(out), "--seed", str(seed)]
            # digits live in memory: loader workers would only add process start-ups
            workers = 0 if args.data == "digits" else args.num_workers
            if workers is not None:
                eval_argv += ["--num-workers", str(workers)]
            if args.data_dir:
                eval_argv += ["--data-dir", args.data_dir]
            if args.download:
                eval_argv.append("--download")
            if args.gpus:
                eval_argv += ["--gpus", "1"]
            if row is None:
                eval_argv.append("--random-init")
            t0 = time.time()
            eval_linear.main(eval_argv)
            evaluation = json.loads(out.read_text())
            protocols = evaluation["protocols"]
            record["metrics"] = {
                "linear_top1": protocols["offline linear probe"]["top1"],
                "linear_top5": protocols["offline linear probe"]["top5"],
                "knn20_top1": protocols["kNN k=20"]["top1"],
                "knn200_top1": protocols["kNN k=200"]["top1"],
                "online_top1": protocols["online probe during pretraining"]["top1"],
                "mi_estimate": (record.get("train") or {})
                .get("metrics", {})
                .get("train/mi_estimate"),
            }
            record["diagnostics"] = {"features": evaluation["diagnostics"]}
            if row is not None:
                import torch

                device = torch.device("cuda:0" if args.gpus else "cpu")
                record["diagnostics"]["embeddings"] = embedding_diagnostics(
                    ckpt, args.data, args.data_dir or record["config"]["data"]["dir"], device
                )
            record["eval_settings"] = protocols["offline linear probe"]["settings"]
            record["eval_wall_time_s"] = round(time.time() - t0, 1)
            if record["status"] == "ok" and row is not None:
                # Judged by the projector output's effective rank, the rule these results
                # were recorded with (the training monitor judges the backbone features,
                # infossl/eval/monitor.py).
                emb = record["diagnostics"]["embeddings"]["effective_rank"]
                if not math.isfinite(emb):
                    record["status"] = "diverged"
                elif is_collapsed(emb, dim(record["config"]), fraction(record["config"])):
                    record["status"] = "collapsed"
        except Exception as err:  # noqa: BLE001 - one bad run must not stop the table
            if record["status"] == "ok":
                record["status"] = "failed"
                record["error"] = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
    record["wall_time_s"] = round(time.time() - started, 1)
    return record


# ---- the benchmark ------------------------------------------------------------------------------
def settings_of(args, rows: list[Row]) -> dict:
    return {
        "data": args.data,
        "rows": [r.name for r in rows],
        "seeds": list(args.seeds),
        "epochs": args.epochs or (DIGITS_BUDGET["epochs"] if args.data == "digits" else None),
        "backbone": args.backbone
        or (
            f"{DIGITS_BUDGET['backbone']} width {DIGITS_BUDGET['width']}"
            if args.data == "digits"
            else None
        ),
        "batch_size": args.batch_size,
        "gpus": args.gpus,
        "overrides": list(args.overrides),
    }


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_results(args, rows: list[Row]) -> dict:
    path = args.out / "results.json"
    settings = settings_of(args, rows)
    if not path.is_file():
        return {"benchmark": "ssl_methods", "settings": settings, "machine": machine(), "runs": []}
    if not args.resume:
        raise UserError(f"{path} exists; pass --resume to continue it, or another --out")
    results = json.loads(path.read_text())
    keep = {k: v for k, v in results["settings"].items() if k not in ("rows", "seeds")}
    given = {k: v for k, v in settings.items() if k not in ("rows", "seeds")}
    if keep != given:
        raise UserError(f"{path} was run with {keep}, not {given}; use another --out")
    results["settings"]["rows"] = list(
        dict.fromkeys(results["settings"]["rows"] + settings["rows"])
    )
    results["settings"]["seeds"] = sorted(set(results["settings"]["seeds"]) | set(args.seeds))
    # failed runs are retried
    results["runs"] = [r for r in results["runs"] if r["status"] != "failed"]
    return results


def save(results: dict, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out / "results.json")


def planned(rows: list[Row], seeds: list[int]) -> list[tuple[Row | None, int]]:
    """Seed-major, so a stopped table holds whole seeds; random-init after each seed's first row."""
    plan: list[tuple[Row | None, int]] = []
    for seed in seeds:
        for i, row in enumerate(rows):
            plan.append((row, seed))
            if i == 0:
                plan.append((None, seed))
    return plan


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_intermixed_args(argv)
    rows = parse_rows(args.methods)
    check_inputs(args, rows)
    results = load_results(args, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    if "command" not in results:
        results["command"] = " ".join(["benchmarks/ssl_methods.py", *(argv or sys.argv[1:])])
    done = {(r["row"], r["seed"]) for r in results["runs"]}
    todo = [
        (row, s)
        for row, s in planned(rows, args.seeds)
        if (row.name if row else RANDOM_INIT, s) not in done
    ]
    from tqdm import tqdm

    from benchmarks._ssl_report import write_report

    with tqdm(total=len(todo), desc="runs", unit="run", file=sys.__stderr__) as bar:
        for row, seed in todo:
            bar.set_postfix_str(f"{row.name if row else RANDOM_INIT} seed {seed}")
            baseline = None
            if row is None:  # the same backbone architecture, untrained: any run of this seed
                baseline = args.out / "runs" / run_name(rows[0], seed) / "checkpoints" / "last.ckpt"
            record = run_one(args, row, seed, baseline)
            record["loadavg_1min"] = os.getloadavg()[0]
            results["runs"].append(record)
            save(results, args.out)
            bar.update()
            if record["status"] != "ok":
                tqdm.write(f"{record['row']} seed {seed}: {record['status']}", file=sys.__stderr__)
    write_report(results, args.out)
    print(f"wrote {args.out / 'results.json'}, table.md, rank_vs_accuracy.png")
    return results


def cli() -> int:
    main()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(cli))
