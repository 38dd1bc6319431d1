"""Training throughput: steady-state images/s, where the time goes, and the framework's cost.

For one method x backbone x image size x batch x precision on ``--device cpu|cuda``:

  data/cpu_augment     the DataLoader with the CPU (PIL) multi-view pipeline, alone
  data/gpu_augment     the uint8 DataLoader + the batched augmentation on the device
  augment_kernels      the batched augmentation alone on a device-resident uint8 batch
  step/manual          model + loss + probe + optimizer on pre-made device batches, in a
                       hand-written PyTorch loop (no Lightning)
  step/lightning       the same LightningModule in the Trainer as train.py runs it, same batches
  train/<augment_on>   end to end: Trainer + data module (workers, augmentation) + step
  loss                 InfoNCE forward+backward against lightly's NTXentLoss (batch x dim)
  peak                 measured dense matmul FLOP/s of the device (bf16 on CUDA, fp32 on CPU)
                       and the fraction of it the model step reaches (FlopCounterMode FLOPs)

Framework overhead = manual images/s / Lightning images/s - 1 (target: at most 5%). Images are
synthetic CIFAR-like PIL images held in memory (no decoding, as CIFAR). JSON to ``--out`` and a
table on stdout. Examples (BENCHMARKS.md lists the ones behind its tables):

    python benchmarks/throughput.py --device cpu --batch-size 32 --out runs/throughput_cpu.json
    python benchmarks/throughput.py --device cuda --batch-size 512 --precision bf16-mixed \
        --workers 8 --out runs/throughput_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

# infossl is the installed package; the sibling helper module is found as benchmarks._... when
# imported (tests), and from this folder, sys.path[0], when run as a script.
if __package__:
    from benchmarks import _throughput_parts as P
else:
    import _throughput_parts as P
from infossl import config as C
from infossl.speed import resolve_speed

PARTS = ("data", "augment_kernels", "step", "train", "loss", "peak", "variants")
# Speed settings compared by the "variants" part, against the run's own settings.
VARIANTS = {
    "nchw": {"channels_last": False},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "eager": {"compile": False},
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--method", default="infonce")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="auto", help="auto, 32 or bf16-mixed")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--augment-on", default="cpu,gpu", help="train/ runs: cpu, gpu or both")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the windows")
    p.add_argument("--steps", type=int, default=3, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows per measurement")
    p.add_argument("--rounds", type=int, default=2, help="manual/Lightning alternations")
    p.add_argument("--loss-batch", type=int, default=512)
    p.add_argument("--loss-dim", type=int, default=128)
    p.add_argument("--loss-repeats", type=int, default=20)
    p.add_argument("--peak-size", type=int, default=0, help="matmul size (0: 8192 / 1024)")
    p.add_argument("--parts", default=",".join(PARTS[:-1]), help=f"subset of {','.join(PARTS)}")
    p.add_argument(
        "--variants",
        default="nchw,compile",
        help=f"variants part: the hand-written step with {','.join(VARIANTS)} against the "
        "run's settings, windows interleaved",
    )
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def _config(args, device: torch.device) -> tuple[dict, dict, str]:
    cfg = C.default_config(args.method, "cifar10")  # CIFAR's normalisation and augmentation
    overrides = [
        f"backbone.name={args.backbone}",
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        f"trainer.compile={str(args.compile).lower()}",
        # Every timed window holds a logging step (TensorBoard write, the non-finite guard's
        # read): with short CPU windows that logs more often than the default 10 steps, so it
        # over-counts the framework's cost rather than hiding it.
        f"trainer.log_every_n_steps={min(args.steps, 10)}",
        *args.overrides,
    ]
    if args.channels_last != "auto":
        overrides.append(f"trainer.channels_last={args.channels_last == 'on'}")
    cfg = C.resolve_views(C.apply_overrides(cfg, overrides))
    C.validate(cfg)
    plain = C.to_plain(cfg)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    precision = args.precision
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16-mixed" if bf16 else "32"
    if precision not in ("32", "bf16-mixed"):
        raise SystemExit("throughput.py: --precision must be auto, 32 or bf16-mixed")
    return plain, resolve_speed(plain, accelerator), precision


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("throughput.py: --device cuda but torch sees no CUDA device")
    cfg, speed, precision = _config(args, device)
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        raise SystemExit(f"throughput.py: unknown parts {sorted(parts - set(PARTS))}")
    batch = cfg["data"]["batch_size"]
    result = {
        "machine": P.machine_info(device),
        "config": {
            "device": args.device,
            "method": args.method,
            "backbone": args.backbone,
            "image_size": args.image_size,
            "batch_size": batch,
            "views": len(cfg["data"]["views"]),
            "precision": precision,
            "workers": args.workers,
            "warmup": args.warmup,
            "steps": args.steps,
            "repeats": args.repeats,
            "rounds": args.rounds,
            "speed": speed,
            "overrides": args.overrides,
        },
        "images_per_s": {},
    }
    rates = result["images_per_s"]

    def windows(total_batch=batch, scale=1):
        return P.Windows(args.warmup, args.steps * scale, args.repeats, total_batch, device)

    n_images = batch * (args.warmup + args.steps * args.repeats + 2)
    if "data" in parts or "augment_kernels" in parts:
        for where in ("cpu", "gpu"):
            dm = P.SyntheticDataModule(cfg, {**speed, "augment_on": where}, n_images)
            dm.setup("fit")
            if "data" in parts:
                rates[f"data/{where}_augment"] = P.summary(P.data_pipeline(dm, device, windows()))
            if where == "gpu" and "augment_kernels" in parts:
                kernels = P.augment_kernels(dm, device, windows())
                rates["augment_kernels"] = P.summary(kernels)
    if "data/cpu_augment" in rates and "data/gpu_augment" in rates:
        result["gpu_over_cpu_augment"] = (
            rates["data/gpu_augment"]["median"] / rates["data/cpu_augment"]["median"]
        )
    with tempfile.TemporaryDirectory() as logs:
        if "step" in parts:
            manual, lightning = [], []
            for _ in range(args.rounds):  # alternate, so load changes hit both alike
                manual += P.manual_loop(cfg, speed, precision, device, windows())
                lightning += P.lightning_step(cfg, speed, precision, device, windows(), logs)
            rates["step/manual"] = P.summary(manual)
            rates["step/lightning"] = P.summary(lightning)
            result["framework_overhead_pct"] = 100 * (
                rates["step/manual"]["median"] / rates["step/lightning"]["median"] - 1
            )
        if "variants" in parts:
            speeds = {"default": speed}
            for name in args.variants.split(","):
                if name not in VARIANTS:
                    raise SystemExit(f"throughput.py: unknown variant '{name}'")
                speeds[name] = {**speed, **VARIANTS[name]}
            found = P.manual_variants(
                cfg, speeds, precision, device, args.warmup, args.steps, args.repeats
            )
            for name, values in found.items():
                rates[f"variant/{name}"] = P.summary(values)
            result["variant_speedup"] = {
                name: P.paired_speedup(values, found["default"])
                for name, values in found.items()
                if name != "default"
            }
        if "train" in parts:
            for where in args.augment_on.split(","):
                run_speed = {**speed, "augment_on": where}
                train = P.lightning_train(
                    cfg, run_speed, precision, device, windows(), logs, n_images
                )
                rates[f"train/{where}_augment"] = P.summary(train)
    if "loss" in parts:
        result["loss_fwd_bwd"] = {
            "batch": args.loss_batch,
            "dim": args.loss_dim,
            **P.loss_times(args.loss_batch, args.loss_dim, device, args.loss_repeats),
        }
    if "peak" in parts:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        size = args.peak_size or (8192 if device.type == "cuda" else 1024)
        peak = P.matmul_peak(device, dtype, size, repeats=10)
        flops = P.step_flops(cfg, speed, device)
        result["peak"] = {"dtype": str(dtype), "matmul_size": size, "matmul_flops_per_s": peak}
        result["peak"]["step_flops"] = flops
        for name in [n for n in rates if n.startswith(("step/", "variant/"))]:
            achieved = flops * rates[name]["median"] / batch
            result["peak"][f"{name}_fraction_of_peak"] = achieved / peak
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    return result


def table(result: dict) -> str:
    c = result["config"]
    lines = [
        f"{c['method']} {c['backbone']} {c['image_size']}px batch {c['batch_size']} "
        f"x{c['views']} views, {c['precision']}, channels_last={c['speed']['channels_last']}, "
        f"compile={c['speed']['compile']}, {c['workers']} workers, device {c['device']}",
        f"load average {result['machine']['load_avg_start']} -> "
        f"{result['machine']['load_avg_end']}",
        "",
        "| measurement | images/s (median) | min | max | IQR % |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["images_per_s"].items():
        lines.append(
            f"| {name} | {r['median']:.1f} | {r['min']:.1f} | {r['max']:.1f} | {r['iqr_pct']:.1f} |"
        )
    if "framework_overhead_pct" in result:
        lines.append(
            f"\nframework overhead (manual / Lightning - 1): "
            f"{result['framework_overhead_pct']:+.1f}%"
        )
    for name, sp in result.get("variant_speedup", {}).items():
        lines.append(
            f"{name} / default, paired windows: {sp['median']:.3f}x "
            f"(min {sp['min']:.3f}, max {sp['max']:.3f})"
        )
    if "gpu_over_cpu_augment" in result:
        lines.append(
            f"data pipeline, batched augmentation / CPU augmentation: "
            f"{result['gpu_over_cpu_augment']:.2f}x (target on CUDA: >= 3x)"
        )
    if "loss_fwd_bwd" in result:
        lf = result["loss_fwd_bwd"]
        for name in ("infossl_infonce", "lightly_ntxent"):
            lines.append(
                f"loss fwd+bwd {lf['batch']}x{lf['dim']} {name}: {lf[name]['median_ms']:.2f} ms "
                f"(min {lf[name]['min_ms']:.2f}, max {lf[name]['max_ms']:.2f})"
            )
    if "peak" in result:
        pk = result["peak"]
        lines.append(
            f"measured {pk['dtype']} matmul peak: {pk['matmul_flops_per_s'] / 1e12:.3f} TFLOP/s; "
            f"step {pk['step_flops'] / 1e9:.1f} GFLOP"
        )
        for key, value in pk.items():
            if key.endswith("fraction_of_peak"):
                lines.append(f"{key}: {100 * value:.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
