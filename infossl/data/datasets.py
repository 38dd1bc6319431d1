"""Datasets by name (``--data``), each yielding (PIL image, label) items.

torchvision's CIFAR-10/100 and STL-10, ImageFolder trees (with or without class sub-folders)
and scikit-learn's bundled digits (offline). Label -1 means unlabeled.

Missing data never surfaces as a traceback: ``DataError`` says where we looked and how to get it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset, Subset

DATASETS = ("cifar10", "cifar100", "stl10", "folder", "digits")
SPLITS = ("train", "train_labeled", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# Normalisation: CIFAR values as solo-learn uses them; STL-10 as solo-learn's stl10 entry;
# ImageNet statistics for folders (torchvision's convention). Digits: computed once from the
# 1,437-image training split at 32 px (grey, so one value per channel repeated).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
STL10_STATS = ((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DIGITS_STATS = ((0.3094,) * 3, (0.3488,) * 3)

DIGITS_TRAIN_SIZE = 1437  # stratified split of the 1,797 digits with seed 0: 1,437 / 360
DIGITS_IMAGE_SIZE = 32


class DataError(Exception):
    """Missing or unusable data; the message is one line that says how to fix it."""


# ---- digits --------------------------------------------------------------------------------
class DigitsDataset(Dataset):
    """scikit-learn's 8x8 digits (values 0..16) as 32x32 RGB PIL images, fixed stratified split.

    1,437 training and 360 validation images (seed 0), bundled with scikit-learn: no download.

    Args:
        split: "val" for the validation part, anything else for the training part.
        transform: applied to each PIL image.
    """

    def __init__(self, split: str, transform=None):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        indices = np.arange(len(digits.target))
        train_idx, val_idx = train_test_split(
            indices, train_size=DIGITS_TRAIN_SIZE, stratify=digits.target, random_state=0
        )
        chosen = val_idx if split == "val" else train_idx
        pixels = (digits.images[chosen] * (255.0 / 16.0)).round().astype(np.uint8)
        self.images = [
            Image.fromarray(p).resize((DIGITS_IMAGE_SIZE,) * 2, Image.BICUBIC).convert("RGB")
            for p in pixels
        ]
        self.targets = digits.target[chosen].tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.targets[index]


# ---- folders -------------------------------------------------------------------------------
def _has_class_dirs(root: Path) -> bool:
    return any(p.is_dir() for p in root.iterdir())


def _image_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


class UnlabeledFolder(Dataset):
    """A flat (or nested) folder of images without class structure: label -1."""

    def __init__(self, root: Path, transform=None, loader=None):
        self.files = _image_files(root)
        if not self.files:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
        self.transform = transform
        self.loader = loader or torchvision.datasets.folder.default_loader

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        image = self.loader(str(self.files[index]))
        return (self.transform(image) if self.transform else image), -1


def _folder_root(root: Path, split: str) -> tuple[Path, bool]:
    """The directory to read for a split and whether it is a held-out split already."""
    if split == "val" and (root / "val").is_dir():
        return root / "val", True
    if (root / "train").is_dir():
        return root / "train", False
    return root, False


def _folder(root: Path, split: str, transform, loader=None) -> Dataset:
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist; pass --data-dir pointing to an "
            "ImageFolder tree (class sub-folders) or a folder of images"
        )
    if (root / "val").is_dir() and not (root / "train").is_dir():
        raise DataError(
            f"{root} has a val/ folder but no train/ folder; put the training images in "
            f"{root / 'train'} (class sub-folders or plain images) next to {root / 'val'}"
        )
    directory, held_out = _folder_root(root, split)
    if _has_class_dirs(directory):
        kwargs = {"loader": loader} if loader else {}
        try:
            dataset = torchvision.datasets.ImageFolder(
                str(directory), transform=transform, **kwargs
            )
        except FileNotFoundError as err:  # a class sub-folder without any image file
            raise DataError(
                f"image folder {directory}: {err}; remove empty class folders or add images "
                f"({', '.join(IMAGE_EXTENSIONS)})"
            ) from err
    else:
        dataset = UnlabeledFolder(directory, transform, loader)
    if held_out or split == "train":
        return dataset
    # No val/ folder: a fixed 10% holdout for validation, the rest for the labelled probe.
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    cut = max(1, len(order) // 10)
    chosen = order[:cut] if split == "val" else order[cut:]
    return Subset(dataset, sorted(chosen))


def folder_num_classes(root: Path) -> int | None:
    directory, _ = _folder_root(root, "train")
    if not directory.is_dir() or not _has_class_dirs(directory):
        return None
    return sum(1 for p in directory.iterdir() if p.is_dir())


# ---- torchvision datasets ------------------------------------------------------------------
_TORCHVISION = {
    "cifar10": (torchvision.datasets.CIFAR10, "cifar-10-batches-py", "CIFAR-10"),
    "cifar100": (torchvision.datasets.CIFAR100, "cifar-100-python", "CIFAR-100"),
    "stl10": (torchvision.datasets.STL10, "stl10_binary", "STL-10"),
}


def _torchvision_dataset(name: str, root: Path, split: str, transform, download: bool):
    cls, folder, title = _TORCHVISION[name]
    if not download and not (root / folder).is_dir():
        raise DataError(
            f"{title} not found in {root} (looked for {root / folder}); pass "
            f"--download to fetch it, or --data-dir DIR where {folder}/ lies"
        )
    try:
        if name == "stl10":
            stl_split = {"train": "train+unlabeled", "train_labeled": "train", "val": "test"}[split]
            return cls(str(root), split=stl_split, transform=transform, download=download)
        return cls(str(root), train=split != "val", transform=transform, download=download)
    except OSError as err:  # no network, proxy, disk full, unreadable file
        action = f"downloading {title} into {root}" if download else f"reading {root / folder}"
        raise DataError(
            f"{action} failed ({err}); check the network and the disk, or fetch "
            f"{folder}/ by hand and pass --data-dir DIR where it lies"
        ) from err
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted."
        raise DataError(
            f"{title} in {root / folder} is incomplete or corrupted ({err}); "
            "delete it and pass --download"
        ) from err


def build_dataset(
    name: str, root: str | Path, split: str, transform=None, download: bool = False, loader=None
) -> Dataset:
    """A dataset of (image, label) items.

    Args:
        name: one of ``DATASETS``.
        root: data directory (a folder of class sub-folders, or none, for ``folder``).
        split: train, train_labeled (STL-10's labelled part; the training set elsewhere) or val.
        transform: applied to each PIL image.
        download: let torchvision download CIFAR / STL-10 into ``root``.
        loader: image-file loader for ``folder`` (e.g. a ``SafeImageLoader``).

    Returns:
        A ``torch.utils.data.Dataset``; label -1 marks unlabelled images.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'")
    root = Path(root).expanduser()
    if name == "digits":
        return DigitsDataset("val" if split == "val" else "train", transform)
    if name == "folder":
        return _folder(root, split, transform, loader)
    return _torchvision_dataset(name, root, split, transform, download)


def dataset_info(name: str, root: str | Path) -> dict:
    """What a dataset is, without loading it.

    Args:
        name: one of ``DATASETS``.
        root: data directory (read for ``folder``: its class sub-folders).

    Returns:
        dict of ``num_classes`` (None when unlabelled), ``image_size`` (native side, None for
        folders), ``mean`` and ``std`` (normalisation).
    """
    root = Path(root).expanduser()
    info = {
        "cifar10": (10, 32, CIFAR10_STATS),
        "cifar100": (100, 32, CIFAR100_STATS),
        "stl10": (10, 96, STL10_STATS),
        "digits": (10, DIGITS_IMAGE_SIZE, DIGITS_STATS),
    }
    if name == "folder":
        num_classes, size, stats = folder_num_classes(root), None, IMAGENET_STATS
    elif name in info:
        num_classes, size, stats = info[name]
    else:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return {"num_classes": num_classes, "image_size": size, "mean": stats[0], "std": stats[1]}
