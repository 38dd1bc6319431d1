"""The measurements of ``benchmarks/throughput.py``, each timed the same way.

``warmup`` steps, then ``repeats`` windows of ``steps`` steps, the device synchronised only at
window edges (never inside one), images/s per window. A step is one batch of ``batch`` images
(all views of an image count once, as ``train/images_per_sec`` counts them)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from infossl.data.datamodule import SSLDataModule
from infossl.methods import METHODS
from infossl.speed import apply_to_model
from infossl.trainer_factory import build_trainer

# The timing helpers live in a module that needs torch alone (benchmarks/versus.py's children
# import it under other frameworks' environments); re-exported here for throughput.py.
if __package__:
    from benchmarks import _shared as S
else:
    import _shared as S

Windows, machine_info, paired_speedup = S.Windows, S.machine_info, S.paired_speedup
summary, sync, time_loop = S.summary, S.sync, S.time_loop

__all__ = ["Windows", "machine_info", "paired_speedup", "summary", "sync", "time_loop"]


# ---- data -----------------------------------------------------------------------------------
class SyntheticImages(S.ArrayImages):
    """``n`` synthetic CIFAR-like images (``synthetic_arrays``) in memory, as PIL images."""

    def __init__(self, n: int, size: int, transform=None, seed: int = 0):
        super().__init__(S.synthetic_arrays(n, size, seed), transform)


class SyntheticDataModule(SSLDataModule):
    """The real data module (CPU or GPU augmentation, loader settings) over SyntheticImages."""

    def __init__(self, cfg: dict, speed: dict, n: int):
        super().__init__(cfg, speed)
        self.n = n
        self.info = {**self.info, "image_size": cfg["data"]["image_size"]}

    def _build(self, split: str, transform):
        return SyntheticImages(self.n, self.cfg["data"]["image_size"], transform)


def data_pipeline(dm: SyntheticDataModule, device, windows: Windows) -> list[float]:
    """The loader alone (CPU augmentation), or the uint8 loader plus the batched augmentation
    on ``device`` (GPU augmentation)."""
    loader = iter(dm.train_dataloader())

    def step():
        batch = next(loader)
        if dm.gpu_augment is not None:
            batch = type(batch)(batch[0].to(device, non_blocking=True), batch[1], batch[2])
            dm.augment_batch(batch)

    return time_loop(step, windows)


def augment_kernels(dm: SyntheticDataModule, device, windows: Windows) -> list[float]:
    """The batched augmentation alone on a device-resident uint8 batch."""
    batch = next(iter(dm.train_dataloader()))
    batch = type(batch)(batch[0].to(device), batch[1].to(device), batch[2])
    return time_loop(lambda: dm.augment_batch(batch), windows)


# ---- model step -----------------------------------------------------------------------------
def premade_batches(cfg: dict, device, count: int = 4) -> list[tuple]:
    """Normalised multi-view float batches already on the device."""
    d = cfg["data"]
    g = torch.Generator().manual_seed(0)
    shape = (d["batch_size"], 3, d["image_size"], d["image_size"])
    views = len(d["views"])
    return [
        (
            [torch.randn(shape, generator=g).to(device) for _ in range(views)],
            torch.randint(0, 10, (d["batch_size"],), generator=g).to(device),
            torch.zeros((), dtype=torch.long),
        )
        for _ in range(count)
    ]


def build_method(cfg: dict, speed: dict, device) -> pl.LightningModule:
    torch.manual_seed(cfg["seed"])
    return apply_to_model(METHODS[cfg["method"]](cfg, 10).to(device), speed)


def make_manual_step(cfg: dict, speed: dict, precision: str, device, total: int):
    """One training step of the same modules, loss, probe, optimizer (LARS/SGD/AdamW groups)
    and per-step cosine schedule as the LightningModule, in plain PyTorch: no Trainer, no
    logging."""
    method = build_method(cfg, speed, device)
    method.train()
    method.global_batch_size = lambda: cfg["data"]["batch_size"]
    method._schedule_lengths = lambda: (0, total)
    configured = method.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    batches = premade_batches(cfg, device)
    bf16 = precision == "bf16-mixed"
    state = {"i": 0}

    def step():
        views, labels = batches[state["i"] % len(batches)][:2]
        state["i"] += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if method.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            features = [method.backbone(v) for v in views]
            embeddings = [method.projector(f) for f in features]
            loss = method.loss_terms(features, embeddings, labels)["loss"]
            probe = method._online_probe_loss(features[0].detach(), labels, {})
        (loss + probe).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    return step


def manual_loop(cfg: dict, speed: dict, precision: str, device, windows: Windows) -> list[float]:
    step = make_manual_step(cfg, speed, precision, device, windows.total)
    return time_loop(step, windows)


def manual_variants(
    cfg: dict,
    speeds: dict[str, dict],
    precision: str,
    device,
    warmup: int,
    steps: int,
    repeats: int,
) -> dict[str, list[float]]:
    """The hand-written step under several speed settings, their timed windows interleaved
    (A, B, C, A, B, C, ...) so that a change in machine load hits every variant alike."""
    batch = cfg["data"]["batch_size"]
    total = warmup + steps * repeats
    fns = {name: make_manual_step(cfg, sp, precision, device, total) for name, sp in speeds.items()}
    for fn in fns.values():  # warm-up, including any compilation
        for _ in range(warmup):
            fn()
    rates = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(device)
            rates[name].append(steps * batch / (time.perf_counter() - start))
    return rates


class _WindowCallback(pl.Callback):
    def __init__(self, windows: Windows):
        self.windows = windows

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.windows.tick():
            trainer.should_stop = True


def timed_trainer(cfg, speed, precision, device, windows, log_dir) -> pl.Trainer:
    """train.py's Trainer (``infossl.trainer_factory.build_trainer``: its callbacks, logger,
    strategy and precision) on one device, without the epoch-end checkpoint writers (nothing
    timed here is kept), stopped after the timed windows, no validation."""
    devices = {
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "devices": 1,
        "precision": precision,
    }
    return build_trainer(
        cfg,
        Path(log_dir),
        devices,
        speed,
        checkpoints=False,
        extra_callbacks=[_WindowCallback(windows)],
        max_steps=windows.total,
        limit_val_batches=0,
    )


def lightning_step(cfg, speed, precision, device, windows, log_dir) -> list[float]:
    """Our LightningModule in the Trainer as train.py runs it (``timed_trainer``: its callbacks,
    TensorBoard logging every ``log_every_n_steps``), fed the pre-made device batches."""
    method = build_method(cfg, speed, device)
    batches = premade_batches(cfg, device)
    feed = [batches[i % len(batches)] for i in range(windows.total + 1)]
    loader = DataLoader(feed, batch_size=None, collate_fn=lambda b: b)
    timed_trainer(cfg, speed, precision, device, windows, log_dir).fit(
        method, train_dataloaders=loader
    )
    return windows.rates


def lightning_train(cfg, speed, precision, device, windows, log_dir, n_images) -> list[float]:
    """End to end: the real data module (loader workers, CPU or GPU augmentation) + the step."""
    method = build_method(cfg, speed, device)
    dm = SyntheticDataModule(cfg, speed, n_images)
    timed_trainer(cfg, speed, precision, device, windows, log_dir).fit(method, datamodule=dm)
    return windows.rates


def step_flops(cfg: dict, speed: dict, device) -> float:
    """FLOPs of one training step's forward and backward (torch's FlopCounterMode: matmuls and
    convolutions), for the fraction of the device's measured matrix throughput."""
    from torch.utils.flop_counter import FlopCounterMode

    method = build_method(cfg, {**speed, "compile": False}, device)
    views, labels = premade_batches(cfg, device, count=1)[0][:2]
    with FlopCounterMode(display=False) as counter:
        features = [method.backbone(v) for v in views]
        embeddings = [method.projector(f) for f in features]
        loss = method.loss_terms(features, embeddings, labels)["loss"]
        loss.backward()
    return float(counter.get_total_flops())


def matmul_peak(device, dtype, size: int, repeats: int) -> float:
    """Measured dense matmul throughput (FLOP/s) of ``size`` x ``size`` products: the best of
    ``repeats`` timings (a peak, so the least disturbed one)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    inner = 10 if device.type == "cuda" else 1
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        times.append((time.perf_counter() - start) / inner)
    return 2 * size**3 / min(times)


# ---- loss -----------------------------------------------------------------------------------
def loss_times(batch: int, dim: int, device, repeats: int, temperature: float = 0.2) -> dict:
    """Forward + backward milliseconds of our InfoNCE and lightly's NTXentLoss on the same
    (batch x dim) pairs; interleaved so machine load hits both alike."""
    from lightly.loss import NTXentLoss

    from infossl.losses.infonce import InfoNCELoss

    ours, theirs = InfoNCELoss(temperature), NTXentLoss(temperature=temperature)
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(batch, dim, generator=g).to(device).requires_grad_()
    z2 = torch.randn(batch, dim, generator=g).to(device).requires_grad_()
    values = {}

    def run(name, fn):
        sync(device)
        start = time.perf_counter()
        loss = fn()
        loss.backward()
        sync(device)
        values[name] = float(loss.detach())
        return 1000 * (time.perf_counter() - start)

    fns = {
        "infossl_infonce": lambda: ours(z1, z2)["loss"],
        "lightly_ntxent": lambda: theirs(z1, z2),
    }
    for name, fn in fns.items():  # warm-up
        run(name, fn)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(run(name, fn))
    return {
        name: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t)}
        for name, t in times.items()
    } | {"loss_values": values}
