"""Multi-view augmentation pipelines defined in configs, and the evaluation transforms.

A view is a dict (see configs/augmentations/*.yaml): crop_scale, crop_interpolation, hflip_p,
jitter [b, c, s, h], jitter_p, grayscale_p, blur_p, blur_sigma, solarize_p, and optionally
crop_ratio [lo, hi] (default 3/4 to 4/3). The order is
solo-learn's (``build_transform_pipeline``): crop, jitter, grayscale, blur, solarize, flip.
lightly's GaussianBlur (PIL, sigma ~ U[lo, hi]), RandomSolarization and MultiViewTransform are
used as they are; lightly's BYOLView*Transform is not, because it fixes the crop's upper scale
at 1.0 and the interpolation at bilinear, and solo-learn's CIFAR recipes use bicubic crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torchvision.transforms as T
from lightly.transforms.gaussian_blur import GaussianBlur
from lightly.transforms.multi_view_transform import MultiViewTransform
from lightly.transforms.solarize import RandomSolarization

INTERPOLATIONS = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}
VIEW_KEYS = {
    "crop_scale",
    "crop_interpolation",
    "hflip_p",
    "jitter",
    "jitter_p",
    "grayscale_p",
    "blur_p",
    "blur_sigma",
    "solarize_p",
}
# Optional keys and their defaults (torchvision's RandomResizedCrop aspect-ratio range).
OPTIONAL_VIEW_KEYS = {"crop_ratio": (3 / 4, 4 / 3)}


def build_view_transform(
    view: Mapping, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> T.Compose:
    unknown = set(view) - VIEW_KEYS - set(OPTIONAL_VIEW_KEYS)
    missing = VIEW_KEYS - set(view)
    if unknown or missing:
        raise ValueError(
            f"augmentation view keys: unknown {sorted(unknown)}, missing "
            f"{sorted(missing)}; the keys are {sorted(VIEW_KEYS)}"
        )
    b, c, s, h = view["jitter"]
    steps = [
        T.RandomResizedCrop(
            image_size,
            scale=tuple(view["crop_scale"]),
            ratio=tuple(view.get("crop_ratio", OPTIONAL_VIEW_KEYS["crop_ratio"])),
            interpolation=INTERPOLATIONS[view["crop_interpolation"]],
        ),
        T.RandomApply([T.ColorJitter(b, c, s, h)], p=view["jitter_p"]),
        T.RandomGrayscale(p=view["grayscale_p"]),
        GaussianBlur(prob=view["blur_p"], sigmas=tuple(view["blur_sigma"])),
        RandomSolarization(prob=view["solarize_p"]),
        T.RandomHorizontalFlip(p=view["hflip_p"]),
        T.ToTensor(),
        T.Normalize(mean, std),
    ]
    return T.Compose(steps)


def build_multiview_transform(views: Sequence[Mapping], image_size: int, mean, std):
    """PIL image -> list of augmented tensors, one per configured view.

    Each view is RandomResizedCrop, colour jitter, grayscale, Gaussian blur, solarization and
    flip with its own probabilities, in solo-learn's order (vturrisi/solo-learn,
    ``solo/data/pretrain_dataloader.py: build_transform_pipeline``); the presets are SimCLR's
    recipe and the asymmetric BYOL/VICReg views of CorInfoMax's ``cifars-tiny/transform_utils.py``
    (serdarozsoy/corinfomax-ssl).

    Args:
        views: one mapping per view with the keys of ``configs/augmentations/*.yaml``.
        image_size: output side in pixels.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.

    Returns:
        A callable PIL image -> list of (3, S, S) tensors.
    """
    return MultiViewTransform([build_view_transform(v, image_size, mean, std) for v in views])


def build_eval_transform(image_size: int, mean, std, resize_ratio: float = 8 / 7) -> T.Compose:
    """Resize(int(size * 8/7)) + CenterCrop(size), then normalise: CorInfoMax's test transform.

    serdarozsoy/corinfomax-ssl (36 -> 32 on CIFAR; int() truncates as the official code does,
    round() would give 37).

    Args:
        image_size: output side S in pixels.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        resize_ratio: resize to int(S * resize_ratio) before the centre crop.

    Returns:
        torchvision ``Compose``: PIL image -> (3, S, S) tensor.
    """
    return T.Compose(
        [
            T.Resize(int(image_size * resize_ratio), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def build_crop_flip_transform(image_size: int, mean, std) -> T.Compose:
    """The linear probe's training augmentation in CorInfoMax's protocol."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
