"""Datasets, view transforms, GPU augmentation and the datamodule.

``DATASETS`` names the datasets ``build_dataset`` (and ``--data``) accepts: CIFAR-10/100 and
STL-10 from torchvision, an image ``folder`` (class sub-folders, or none) and scikit-learn's
bundled ``digits`` (offline).

Importing this package is cheap: a name loads its module on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "DATASETS": "datasets",
    "DataError": "datasets",
    "DigitsDataset": "datasets",
    "build_dataset": "datasets",
    "dataset_info": "datasets",
    "build_multiview_transform": "transforms",
    "build_eval_transform": "transforms",
    "GPUMultiViewAugment": "gpu_augment",
    "SSLDataModule": "datamodule",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
