"""Timing windows, in-memory CIFAR-like images and machine facts shared by the benchmarks.

Needs torch and numpy only (no Lightning, no infossl): ``benchmarks/versus.py`` runs each
framework in its own process and environment, and every one of them imports this module."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(rates: list[float]) -> dict:
    """Median and spread of per-window images/s; the windows are kept in time order."""
    q1, q3 = np.percentile(rates, [25, 75]) if len(rates) > 1 else (rates[0], rates[0])
    median = statistics.median(rates)
    return {
        "median": median,
        "min": min(rates),
        "max": max(rates),
        "iqr_pct": 100 * (q3 - q1) / median if median else 0.0,
        "windows": list(rates),
    }


def paired_speedup(variant: list[float], reference: list[float]) -> dict:
    """Median and range of variant / reference over windows timed next to each other: a load
    change between repeats cancels in each ratio."""
    ratios = [v / r for v, r in zip(variant, reference, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


class Windows:
    """Call ``tick()`` after every step; it keeps images/s of each timed window."""

    def __init__(self, warmup: int, steps: int, repeats: int, batch: int, device):
        self.warmup, self.steps, self.repeats, self.batch = warmup, steps, repeats, batch
        self.device = device
        self.total = warmup + steps * repeats
        self.done, self.rates, self._start = 0, [], None

    def tick(self) -> bool:
        """True once every window is timed."""
        self.done += 1
        k = self.done - self.warmup
        if k == 0 or (k > 0 and k % self.steps == 0):
            sync(self.device)
            now = time.perf_counter()
            if k > 0:
                self.rates.append(self.steps * self.batch / (now - self._start))
            self._start = now
        return self.done >= self.total


def time_loop(step: Callable[[], None], windows: Windows) -> list[float]:
    while True:
        step()
        if windows.tick():
            return windows.rates


def synthetic_arrays(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth random RGB images (a 4x4 colour pattern upsampled) as (n, size, size, 3)
    uint8, CIFAR-like: the augmentation's cost does not depend on the content."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 4, 4), generator=g)
    images = torch.nn.functional.interpolate(low, size=size, mode="bilinear") * 255
    return images.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class ArrayImages(Dataset):
    """(n, H, W, 3) uint8 images held in memory, served as (PIL image, label) like
    torchvision's CIFAR datasets: no decoding (CIFAR is held in memory as arrays too)."""

    def __init__(self, arrays: np.ndarray, transform=None):
        self.arrays = arrays
        self.transform = transform

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.arrays[i])
        return (self.transform(image) if self.transform else image), i % 10


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_start": list(os.getloadavg()),
    }
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln)
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
