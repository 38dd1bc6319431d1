"""The multi-view augmentation of ``transforms.py`` applied to a whole uint8 batch on its device.

The CPU pipeline draws one parameter set per image; here every parameter is drawn per sample
too, from the same distributions, so moving augmentation to the GPU changes the speed, not the
views' distribution. Order as on the CPU (solo-learn's): crop, jitter, grayscale, blur,
solarize, flip, normalise.

Written by hand, not with kornia: kornia's ColorJitter draws one order of the four colour
adjustments per batch (``torch.randperm(4)`` in its generator) where torchvision draws one per
image, and torchvision.transforms.v2 applies one parameter set per call. The parameters drawn
last are kept in ``last_params`` (one dict per view) so tests can check them.

No host-device synchronisation: every random choice is a per-sample mask applied with
``torch.where`` (no ``nonzero``, boolean indexing or ``.item()``), so the CPU can queue the
augmentation and the training step behind it without waiting for the GPU
(``tests/data/test_gpu_augment.py`` records every syncing op).

Known differences from the PIL pipeline: resampling is ``grid_sample`` without antialiasing
(only matters when a crop is larger than the output, never for CIFAR); bicubic taps at a crop's
edge read the real neighbouring pixels rather than a replicated crop edge; values are not
quantised to 8 bits between steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch import Tensor, nn

from infossl.data.transforms import VIEW_KEYS

CROP_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's default aspect-ratio range
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale (ITU-R 601-2 luma)


def _uniform(shape, lo: float, hi: float, device, generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, device=device, generator=generator)


# ---- crop -----------------------------------------------------------------------------------
def sample_crop_boxes(
    batch: int, height: int, width: int, scale, ratio=CROP_RATIO, device=None, generator=None
) -> Tensor:
    """(batch, 4) long boxes [top, left, h, w] drawn as torchvision's
    ``RandomResizedCrop.get_params``: 10 tries of area ~ U(scale) and log-ratio ~ U(log ratio),
    the first try that fits wins, else the centred fallback crop."""
    tries = 10
    area = height * width
    target = area * _uniform((batch, tries), scale[0], scale[1], device, generator)
    log_ratio = _uniform((batch, tries), math.log(ratio[0]), math.log(ratio[1]), device, generator)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting try
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    # torchvision's fallback: the whole image, clipped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    found = fits.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    # torch.randint(0, n + 1) per sample: floor(U * (n + 1)), capped for U = 1 - eps rounding.
    u = torch.rand((batch, 2), device=device, generator=generator)
    top = torch.minimum((u[:, 0] * (height - h + 1)).floor().long(), height - h)
    left = torch.minimum((u[:, 1] * (width - w + 1)).floor().long(), width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(x: Tensor, boxes: Tensor, size: int, mode: str = "bilinear") -> Tensor:
    """Crop each image to its box [top, left, h, w] and resize to size x size in one
    ``grid_sample``. Output pixel u samples source x = left + (u + 0.5) w / size - 0.5, the
    half-pixel convention of ``F.interpolate(align_corners=False)``. For bilinear, clamping x to
    the crop's pixel centres reproduces crop-then-resize exactly; bicubic is left unclamped, as
    interpolate leaves it, so it is exact for whole-image boxes and reads the real neighbours
    (not a replicated crop edge) at an inner crop's border."""
    _, _, height, width = x.shape
    top, left, h, w = (boxes[:, k, None].to(x.dtype) for k in range(4))
    steps = (torch.arange(size, device=x.device, dtype=x.dtype) + 0.5) / size
    xs, ys = left + steps * w - 0.5, top + steps * h - 0.5
    if mode == "bilinear":
        xs = torch.minimum(torch.maximum(xs, left), left + w - 1)
        ys = torch.minimum(torch.maximum(ys, top), top + h - 1)
    # grid_sample's normalised coordinates (align_corners=False): -1 and 1 are the outer edges.
    gx = (2 * xs + 1) / width - 1
    gy = (2 * ys + 1) / height - 1
    grid = torch.stack(
        [gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)], dim=-1
    )
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp(0, 1) if mode == "bicubic" else out  # bicubic overshoots; PIL clips too


# ---- colour ---------------------------------------------------------------------------------
def grayscale(x: Tensor) -> Tensor:
    """Luma of (B, 3, H, W) in [0, 1], repeated over 3 channels (torchvision's weights)."""
    r, g, b = x.unbind(1)
    gray = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
    return gray.unsqueeze(1).expand_as(x)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    # torchvision's _blend for float images: ratio * img1 + (1 - ratio) * img2, clipped.
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """Hexcone HSV of (B, 3, H, W) in [0, 1]; hue in [0, 1) (Python's colorsys convention)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    grey = delta == 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2 + rc - bc, 4 + gc - rc))
    h = torch.where(grey, torch.zeros_like(h), torch.remainder(h / 6, 1.0))
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    sector = sector.long() % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    # (r, g, b) per sector 0..5 of the hue circle.
    table = torch.stack(
        [
            torch.stack([v, q, p, p, t, v], dim=1),
            torch.stack([t, v, v, q, p, p], dim=1),
            torch.stack([p, p, t, v, v, q], dim=1),
        ],
        dim=1,
    )  # (B, 3, 6, H, W)
    index = sector[:, None, None].expand(-1, 3, 1, -1, -1)
    return table.gather(2, index).squeeze(2)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate the hue by ``factor`` turns (torchvision's adjust_hue, factor in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1))


def sample_jitter(batch: int, strengths, device=None, generator=None) -> tuple[Tensor, Tensor]:
    """Per-sample factors (B, 4) and orders (B, 4) as torchvision's ColorJitter.get_params:
    brightness/contrast/saturation ~ U[max(0, 1 - s), 1 + s], hue ~ U[-h, h], and a uniformly
    random order of the four (``torch.randperm(4)``) for every image."""
    b, c, s, h = strengths
    cols = [_uniform((batch,), max(0.0, 1 - v), 1 + v, device, generator) for v in (b, c, s)]
    cols.append(_uniform((batch,), -h, h, device, generator))
    order = torch.rand((batch, 4), device=device, generator=generator).argsort(dim=1)
    return torch.stack(cols, dim=1), order


def color_jitter(x: Tensor, factors: Tensor, order: Tensor, active: Tensor, strengths) -> Tensor:
    """Apply each sample's four adjustments in its own order, only where ``active``. An
    adjustment whose strength is 0 is skipped, as torchvision skips it (its factor is neutral).

    No host synchronisation: every position computes its adjustment for the whole batch and
    ``torch.where`` keeps it for the samples whose order puts that op there (indexing the
    selected samples would need ``nonzero()``, a device-to-host copy, four times per view).
    Brightness, contrast and saturation are all torchvision's ``_blend(x, other, f)`` with
    other = 0, the image's mean grey or its grey image, so one blend serves all three."""
    blend_ops = [op for op in range(3) if strengths[op] != 0]
    for position in range(4):
        op = order[:, position]
        use_blend = torch.zeros_like(active)
        for k in blend_ops:
            use_blend = use_blend | (op == k)
        use_blend = (active & use_blend).view(-1, 1, 1, 1)
        gray = grayscale(x)
        mean = gray[:, :1].mean(dim=(1, 2, 3), keepdim=True)
        other = torch.where(
            (op == 0).view(-1, 1, 1, 1),
            torch.zeros_like(mean),
            torch.where((op == 1).view(-1, 1, 1, 1), mean, gray),
        )
        factor = factors.gather(1, op.clamp(max=2)[:, None]).squeeze(1)
        x = torch.where(use_blend, _blend(x, other, factor), x)
        if strengths[3] != 0:
            use_hue = (active & (op == 3)).view(-1, 1, 1, 1)
            x = torch.where(use_hue, adjust_hue(x, factors[:, 3]), x)
    return x


# ---- blur, solarize -------------------------------------------------------------------------
def blur_kernel_size(sigma_max: float, image_size: int) -> int:
    """Odd width covering +-3 sigma_max, at most the image (replicate padding needs no more)."""
    radius = min(math.ceil(3 * sigma_max), image_size - 1)
    return 2 * radius + 1


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one sigma per sample (B,), replicate padding at the border
    (PIL's GaussianBlur, used by the CPU pipeline, also extends edge pixels)."""
    batch, channels, height, width = x.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(-1, 1, 1, kernel_size), groups=batch * channels)
    flat = F.conv2d(flat, kernel.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def solarize(x: Tensor) -> Tensor:
    """Invert pixels >= 0.5: PIL's ImageOps.solarize(threshold=128) on 8-bit values v = 255 x,
    since v >= 128 is round(255 x) >= 128, i.e. x >= 127.5 / 255 = 0.5."""
    return torch.where(x >= 0.5, 1 - x, x)


# ---- the module -----------------------------------------------------------------------------
def _mask(batch: int, p: float, device, generator) -> Tensor:
    return torch.rand((batch,), device=device, generator=generator) < p


def augment_view(
    x: Tensor, view: Mapping, size: int, generator=None
) -> tuple[Tensor, dict[str, Tensor]]:
    """One view of a float batch in [0, 1] (B, 3, H, W) -> (B, 3, size, size) in [0, 1], and the
    parameters drawn for it."""
    batch, _, height, width = x.shape
    device = x.device
    boxes = sample_crop_boxes(
        batch, height, width, view["crop_scale"], CROP_RATIO, device, generator
    )
    out = resized_crop(x, boxes, size, view["crop_interpolation"])
    strengths = tuple(float(v) for v in view["jitter"])
    jitter = _mask(batch, view["jitter_p"], device, generator)
    factors, order = sample_jitter(batch, strengths, device, generator)
    out = color_jitter(out, factors, order, jitter, strengths)
    gray = _mask(batch, view["grayscale_p"], device, generator)
    out = torch.where(gray.view(-1, 1, 1, 1), grayscale(out), out)
    blur = _mask(batch, view["blur_p"], device, generator)
    lo, hi = view["blur_sigma"]
    sigma = _uniform((batch,), lo, hi, device, generator)
    # Blurred for the whole batch and selected with where: no nonzero() host sync.
    blurred = gaussian_blur(out, sigma, blur_kernel_size(hi, size))
    out = torch.where(blur.view(-1, 1, 1, 1), blurred, out)
    solar = _mask(batch, view["solarize_p"], device, generator)
    out = torch.where(solar.view(-1, 1, 1, 1), solarize(out), out)
    flip = _mask(batch, view["hflip_p"], device, generator)
    out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    params = {
        "crop": boxes,
        "jitter": jitter,
        "jitter_factors": factors,
        "jitter_order": order,
        "grayscale": gray,
        "blur": blur,
        "blur_sigma": sigma,
        "solarize": solar,
        "hflip": flip,
    }
    return out, params


class GPUMultiViewAugment(nn.Module):
    """Multi-view augmentation on the device: ``forward(images)`` -> one view per view config.

    uint8 (B, 3, H, W) batch on any device -> list of normalised float32 (B, 3, S, S) views,
    with per-sample parameters drawn from the distributions of the CPU pipeline
    (:func:`infossl.data.build_multiview_transform`: torchvision's RandomResizedCrop,
    ColorJitter, RandomGrayscale, lightly's GaussianBlur and RandomSolarization, flip).

    Args:
        views_cfg: one mapping per view with the keys of ``configs/augmentations/*.yaml``.
        image_size: output side S in pixels.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
    """

    def __init__(
        self, views_cfg: Sequence[Mapping], image_size: int, mean: Sequence, std: Sequence
    ):
        super().__init__()
        for view in views_cfg:
            unknown, missing = set(view) - VIEW_KEYS, VIEW_KEYS - set(view)
            if unknown or missing:
                raise ValueError(
                    f"augmentation view keys: unknown {sorted(unknown)}, missing "
                    f"{sorted(missing)}; the keys are {sorted(VIEW_KEYS)}"
                )
        self.views = [dict(v) for v in views_cfg]
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.last_params: list[dict[str, Tensor]] = []

    @torch.no_grad()
    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float() / 255
        elif images.is_floating_point():
            x = images.float()  # already in [0, 1]
        else:
            raise ValueError(f"expected uint8 or float images, got {images.dtype}")
        views, self.last_params = [], []
        for view in self.views:
            out, params = augment_view(x, view, self.image_size, generator)
            views.append((out - self.mean) / self.std)
            self.last_params.append(params)
        return views


def build_gpu_input_transform(image_size: int, native_size: int | None = None):
    """CPU side of GPU augmentation: a uint8 (3, H, W) tensor per image. Fixed-size datasets
    (CIFAR, STL-10, digits: ``native_size`` known) pass unchanged, so crops are taken from the
    full-resolution image as on the CPU; folders of mixed sizes are resized (short side to
    ``image_size``, centre crop) so they stack into one batch, which lowers the resolution
    crops are taken from (use ``data.augment_on: cpu`` for large-image folders)."""
    if native_size is not None:
        return T.PILToTensor()
    return T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.PILToTensor()])
