"""Unreadable or truncated images in folder datasets: skipped and counted, or a clear stop.

Under ``skip`` the loader returns None for a bad file (a warning with the path, from the worker)
and ``SubstituteBadItems`` serves the next readable item in its place, flagging the bad index.
Substituting instead of dropping keeps every batch full, which DDP's all-gather needs (equal
local batch sizes; a collate that drops items would make them unequal); the per-item flags
travel inside the batch, so the count reaches the main process exactly whatever the number of
DataLoader workers (a counter inside a worker would stay in that worker's copy). Under ``error`` the
loader raises ``BadImageError`` naming the file; DataLoader re-raises it in the main process.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate

from infossl.errors import Fault


class BadImageError(Fault):
    """An image file that cannot be decoded."""


class Batch(NamedTuple):
    """What every training/validation loader yields: inputs, labels, bad images dropped, and
    the dataset's nuisance per item (``data.nuisance``; None without one)."""

    inputs: object  # a tensor, or a list of tensors (one per view)
    labels: torch.Tensor
    skipped: torch.Tensor
    nuisance: torch.Tensor | None = None


# What a bad file raises while it is opened and decoded: truncated or foreign data (OSError,
# UnidentifiedImageError), odd headers (ValueError), and PIL's guard against decompression
# bombs (an image of more than 2 x Image.MAX_IMAGE_PIXELS pixels; not an OSError).
BAD_IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


class SafeImageLoader:
    """Image-file loader that survives undecodable files: ``loader(path)`` -> RGB PIL or None.

    Args:
        policy: "skip" (None for a bad file, with a warning) or "error" (``BadImageError``
            naming the file).
        fix: what the error message tells the user to do about it.
    """

    def __init__(
        self, policy: str = "skip", fix: str = "remove or fix it, or set data.on_bad_image=skip"
    ):
        self.policy = policy
        self.fix = fix

    def __call__(self, path: str):
        try:
            with open(path, "rb") as handle:
                image = Image.open(handle)
                image.load()  # decode now: truncated files fail here, not inside a transform
                return image.convert("RGB")
        except BAD_IMAGE_ERRORS as err:
            if self.policy == "error":
                raise BadImageError(f"unreadable image {path} ({err}); {self.fix}") from err
            warnings.warn(f"skipping unreadable image {path} ({err})", stacklevel=2)
            return None


class _Skip:
    """Stands for a bad image so transforms never see None."""


def skip_transform(transform):
    """Wrap a transform so a None image (bad file) passes through as the skip marker."""

    def apply(image):
        if image is None:
            return _Skip
        return transform(image) if transform else image

    return apply


class SubstituteBadItems(Dataset):
    """Yields (input, label, 1 if the file at this index is bad else 0) with a readable item
    for every index. Each bad file is counted by its own index only, so adjacent bad files are
    not counted twice; the count is per visit (a bad file is counted once per epoch)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        n = len(self.dataset)
        for offset in range(n):
            item, label = self.dataset[(index + offset) % n]
            if item is not _Skip:
                return item, label, int(offset > 0)
        raise BadImageError("no readable image left in the dataset")


def collate_with_skips(items: list) -> Batch:
    """Collate (input, label[, bad files stepped over[, nuisance]]) items into a Batch."""
    columns = default_collate(items)
    inputs, labels = columns[0], columns[1]
    skipped = columns[2].sum() if len(columns) > 2 else torch.zeros((), dtype=torch.long)
    nuisance = columns[3] if len(columns) > 3 else None
    return Batch(inputs, labels, skipped, nuisance)
