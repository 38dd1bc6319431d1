"""A nuisance that is easy to learn and useless for the label: a random colour tint per image.

KNIFE's fair-classification and domain-adaptation experiments (Pichler et al., ICML 2022;
g-pichler/knife) minimise I(Z; s) for a nuisance s the encoder can see but the task does not
need. Offline, any labelled image dataset gets one: each image is tinted with one of
``num_values`` colours, drawn uniformly at random and independently of the label, so s is
trivially predictable from the pixels (the colour) and carries no information about the class.

Two forms of the same construction, with the same draw of s (``draw_nuisance``): ``TintNuisance``
wraps a dataset of PIL images (``data.nuisance: tint``; items gain s) and ``tint_nuisance`` tints
a tensor of images at once (benchmarks/knife_nuisance.py). ``nuisance_dataset`` is the one place
that says which draw a split gets: training (infossl/data/datamodule.py) and the offline
evaluation (infossl/eval/offline.py) both call it, so they tint every image alike.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

# RGB multipliers: red, green, blue, yellow, magenta, cyan (as many as num_values asks for).
TINTS = torch.tensor(
    [
        [1.0, 0.2, 0.2],
        [0.2, 1.0, 0.2],
        [0.2, 0.2, 1.0],
        [1.0, 1.0, 0.2],
        [1.0, 0.2, 1.0],
        [0.2, 1.0, 1.0],
    ]
)
MAX_VALUES = len(TINTS)


def draw_nuisance(n: int, num_values: int = 4, seed: int = 0) -> torch.Tensor:
    """s_i ~ Uniform{0, ..., num_values - 1} for n items, from a generator of its own (``seed``),
    so s is independent of the labels and of the training order."""
    if not 2 <= num_values <= MAX_VALUES:
        raise ValueError(f"num_values must be in 2..{MAX_VALUES}, got {num_values}")
    return torch.randint(num_values, (n,), generator=torch.Generator().manual_seed(seed))


def tint_nuisance(
    images: torch.Tensor, num_values: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tint (N, 3, H, W) images in [-1, 1] with a random colour each; returns (tinted, s).

    The tint scales the brightness above black (-1) per channel: the digit's shape is
    unchanged, only its colour says s.
    """
    s = draw_nuisance(images.shape[0], num_values, seed)
    tint = TINTS[:num_values][s].to(images)[:, :, None, None]
    return (images + 1.0) * tint - 1.0, s


def tint_image(image: Image.Image, value: int) -> Image.Image:
    """An RGB PIL image with channel c scaled by ``TINTS[value, c]`` (the brightness above
    black, as ``tint_nuisance`` does on [-1, 1] tensors), rounded to uint8."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    tinted = pixels * TINTS[value].numpy()
    return Image.fromarray(np.clip(np.rint(tinted), 0, 255).astype(np.uint8))


class TintNuisance(Dataset):
    """Items ``(transform(tinted image), label, 0, s)`` of a dataset of ``(PIL image, label)``.

    s is drawn once per index (``draw_nuisance``), so an item's s never changes and every view
    of it shares s; the tint is applied before ``transform`` (the augmentations then act on the
    tinted image). The third field is the loader's count of unreadable files stepped over (none
    here; ``infossl.reliability.safe_images.collate_with_skips`` reads the fields by position).

    Args:
        dataset: yields (PIL image, label), untransformed.
        transform: applied to each tinted PIL image.
        num_values: how many tints (2..6).
        seed: the draw of s (KNIFE's benchmark: 0 for the training split, 1 for the held-out).
    """

    def __init__(self, dataset: Dataset, transform=None, num_values: int = 4, seed: int = 0):
        self.dataset = dataset
        self.transform = transform
        self.num_values = num_values
        self.nuisance = draw_nuisance(len(dataset), num_values, seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        s = int(self.nuisance[index])
        image = tint_image(image, s)
        return (self.transform(image) if self.transform else image), label, 0, s


# The draw of s per split: KNIFE's benchmark (benchmarks/knife_nuisance.py) draws the held-out
# split with its own seed. STL-10's "train_labeled" (torchvision's "train") is the first 5,000
# images of its "train" (torchvision's "train+unlabeled", labelled images first), and a
# generator's draw of n values is the first n of a longer draw, so each keeps its training s.
NUISANCE_SEEDS = {"train": 0, "train_labeled": 0, "val": 1}


def nuisance_dataset(dataset: Dataset, transform, split: str, num_values: int = 4) -> TintNuisance:
    """``dataset`` (untransformed (PIL image, label) items of ``split``) tinted with the s that
    split always gets, then ``transform``ed: items ``(image, label, 0, s)``.

    Args:
        dataset: the split's images, built with ``transform=None``.
        transform: applied to each tinted image (the views, or the evaluation transform).
        split: "train", "train_labeled" (the same draw as "train") or "val".
        num_values: how many tints (``data.nuisance_values``).
    """
    if split not in NUISANCE_SEEDS:
        raise ValueError(f"unknown split '{split}'; one of {', '.join(NUISANCE_SEEDS)}")
    return TintNuisance(dataset, transform, num_values, NUISANCE_SEEDS[split])
