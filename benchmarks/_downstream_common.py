"""What the downstream-experiment benchmarks share.

Labelled images as tensors, a resumable results file, mean +- std tables."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T

from infossl.data.datasets import build_dataset, dataset_info

DATASETS = ("digits", "cifar10", "cifar100")


def image_tensors(
    data: str, data_dir: str, split: str, image_size: int, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as (N, 3, s, s) float images normalised to [-1, 1] and (N,) labels.

    Normalisation (0.5, 0.5, 0.5) as the official ReMINE scripts; no augmentation (they use
    none). Held in memory: digits are 1 797 images, CIFAR 60 000 at 32 px (700 MB as float32).
    """
    transform = T.Compose(
        [T.Resize((image_size, image_size)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]
    )
    ds = build_dataset(data, data_dir, "val" if split == "val" else "train", transform, download)
    images, labels = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack(images), torch.tensor(labels)


def num_classes(data: str, data_dir: str) -> int:
    return dataset_info(data, data_dir)["num_classes"]


class ResultStore:
    """``results.json``: {"settings": ..., "runs": [...]}; every finished run is written at once,
    so an interrupted benchmark continues with ``--resume`` where it stopped."""

    def __init__(self, path: Path, settings: dict, resume: bool):
        self.path = path
        self.runs: list[dict] = []
        if path.exists():
            if not resume:
                raise SystemExit(f"{path} exists; pass --resume to continue it or another --out")
            stored = json.loads(path.read_text())
            if stored["settings"] != settings:
                raise SystemExit(f"{path} was written with other settings; use another --out")
            self.runs = stored["runs"]
        self.settings = settings
        path.parent.mkdir(parents=True, exist_ok=True)

    def done(self, run_id: str) -> bool:
        return any(r["id"] == run_id for r in self.runs)

    def add(self, run: dict) -> None:
        self.runs.append(run)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "runs": self.runs}, indent=1))
        tmp.replace(self.path)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaN entries count as NaN."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "nan"
    if abs(mean) >= 1e6:  # an exploded estimate: fixed-point digits would fill the table
        return f"{mean:.1e} ± {std:.1e}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
