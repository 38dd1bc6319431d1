"""Class-disjoint splits, as the deep-metric-learning benchmarks use them.

All images of the first half of the classes (by class index) train; all images of the other
half are the retrieval test set, classes never seen in training. With an ImageFolder laid out
like CUB-200-2011 (``images/001.Black_footed_Albatross/...``, class folders sorted by name) this
is the standard split: CUB classes 1-100 train / 101-200 test, Cars-196 1-98 / 99-196
(``prepare_data.py`` of jeromerony/dml_cross_entropy). Digits: 0-4 train / 5-9 test.

"All images" means the dataset's train and val splits together (digits: all 1,797; a folder:
the whole tree, plus val/ when it has train/ and val/; torchvision datasets: train + test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset

from infossl.data.datasets import DataError, DigitsDataset, _folder, _torchvision_dataset

PARTS = ("train", "test")


class LabelledSubset(Subset):
    """A Subset that also exposes the labels of its items (for H(Y) and the split itself)."""

    def __init__(self, dataset: Dataset, indices, targets):
        super().__init__(dataset, indices)
        self.targets = list(targets)


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """Labels of every item, read from the dataset objects (no image is decoded)."""
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets, dtype=np.int64)
    if hasattr(dataset, "labels"):  # torchvision STL-10
        return np.asarray(dataset.labels, dtype=np.int64)
    if isinstance(dataset, ConcatDataset):
        return np.concatenate([dataset_targets(d) for d in dataset.datasets])
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if hasattr(dataset, "dataset"):  # wrappers such as SubstituteBadItems
        return dataset_targets(dataset.dataset)
    raise DataError(f"cannot read the labels of {type(dataset).__name__} for a class split")


def _all_images(name: str, root: Path, transform, download: bool, loader) -> Dataset:
    if name == "digits":
        return ConcatDataset([DigitsDataset("train", transform), DigitsDataset("val", transform)])
    if name == "folder":
        parts = [_folder(root, "train", transform, loader)]
        if (root / "train").is_dir() and (root / "val").is_dir():
            parts.append(_folder(root, "val", transform, loader))
        return ConcatDataset(parts) if len(parts) > 1 else parts[0]
    return ConcatDataset(
        [_torchvision_dataset(name, root, s, transform, download) for s in ("train", "val")]
    )


def num_train_classes(num_classes: int) -> int:
    return num_classes // 2


def class_split_dataset(
    name: str,
    root,
    part: str,
    num_classes: int | None,
    transform=None,
    download: bool = False,
    loader=None,
) -> LabelledSubset:
    """The images of the first (``part='train'``) or second (``'test'``) half of the classes."""
    if part not in PARTS:
        raise ValueError(f"class split part must be one of {PARTS}, not '{part}'")
    if not num_classes or num_classes < 2:
        raise DataError(
            f"--data {name} at {root} has no class labels; a class split needs a labelled "
            "ImageFolder tree (DIR/<class>/image.jpg) with at least 2 classes"
        )
    dataset = _all_images(name, Path(root).expanduser(), transform, download, loader)
    targets = dataset_targets(dataset)
    cut = num_train_classes(num_classes)
    keep = (targets >= 0) & (targets < cut) if part == "train" else targets >= cut
    indices = np.flatnonzero(keep)
    if len(indices) == 0:
        raise DataError(f"the class split of --data {name} at {root} has no {part} images")
    return LabelledSubset(dataset, indices.tolist(), targets[indices].tolist())
