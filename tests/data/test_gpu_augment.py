"""Batched per-sample augmentation: each step equals torchvision's functional op with the
sample's own parameters, and the parameters follow the configured distributions."""

import math

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf

from infossl.config import CONFIG_DIR
from infossl.data.gpu_augment import (
    GPUMultiViewAugment,
    adjust_hue,
    color_jitter,
    gaussian_blur,
    resized_crop,
    sample_crop_boxes,
    sample_jitter,
)

torch.set_num_threads(1)


def _preset(name):
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "augmentations" / f"{name}.yaml"))


def _identity_view(**changes):
    view = {
        "crop_scale": [1.0, 1.0],
        "crop_interpolation": "bilinear",
        "hflip_p": 0.0,
        "jitter": [0.0, 0.0, 0.0, 0.0],
        "jitter_p": 0.0,
        "grayscale_p": 0.0,
        "blur_p": 0.0,
        "blur_sigma": [0.1, 2.0],
        "solarize_p": 0.0,
    }
    return {**view, **changes}


def _images(batch, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)


def test_views_have_the_configured_size_dtype_and_normalised_range():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    augment = GPUMultiViewAugment(_preset("asymmetric"), 24, mean, std)
    views = augment(_images(32, 20), generator=torch.Generator().manual_seed(1))
    assert len(views) == 2
    for view in views:
        assert view.shape == (32, 3, 24, 24) and view.dtype == torch.float32
        pixels = view * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
        assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    # A black batch stays black through every step: the output is exactly -mean / std.
    black = augment(torch.zeros(4, 3, 20, 20, dtype=torch.uint8))[0]
    torch.testing.assert_close(
        black, (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1).expand(4, 3, 24, 24)
    )


def test_crop_boxes_lie_inside_the_image_with_scale_and_ratio_in_bounds():
    boxes = sample_crop_boxes(4000, 32, 40, (0.08, 1.0), generator=torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + h <= 32).all() and (left + w <= 40).all())
    area = (h * w).double() / (32 * 40)
    # Rounding w and h to integers moves the area by at most ~ (w + h + 1) / 2 pixels.
    slack = (h + w + 1).double() / 2 / (32 * 40)
    assert bool((area >= 0.08 - slack).all() and (area <= 1.0 + slack).all())
    ratio = w.double() / h.double()
    ok = (ratio >= 3 / 4 * (1 - 1 / h.double()) ** 2) & (ratio <= 4 / 3 * (1 + 1 / h) ** 2)
    assert bool(ok.all())


def test_crop_area_distribution_matches_torchvision_get_params():
    torch.manual_seed(0)
    ours = sample_crop_boxes(3000, 32, 32, (0.2, 1.0), generator=torch.Generator().manual_seed(1))
    ours_area = (ours[:, 2] * ours[:, 3]).double() / 1024
    image = torch.zeros(3, 32, 32)
    theirs = [
        T.RandomResizedCrop.get_params(image, (0.2, 1.0), (3 / 4, 4 / 3)) for _ in range(3000)
    ]
    theirs_area = torch.tensor([h * w / 1024 for _, _, h, w in theirs], dtype=torch.float64)
    # Means and quartiles agree within ~4 standard errors (area sd ~0.23, n = 3000).
    assert float(ours_area.mean()) == pytest.approx(float(theirs_area.mean()), abs=0.02)
    for q in (0.25, 0.5, 0.75):
        assert float(ours_area.quantile(q)) == pytest.approx(
            float(theirs_area.quantile(q)), abs=0.04
        )


def test_resized_crop_equals_torchvision_crop_then_bilinear_resize():
    x = _images(6, 20).float() / 255
    boxes = sample_crop_boxes(6, 20, 20, (0.08, 1.0), generator=torch.Generator().manual_seed(3))
    out = resized_crop(x, boxes, 12, "bilinear")
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        expected = TF.resized_crop(x[i], top, left, h, w, [12, 12], antialias=False)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_full_image_bicubic_resize_equals_torchvision():
    x = _images(3, 10).float() / 255
    boxes = torch.tensor([[0, 0, 10, 10]] * 3)
    out = resized_crop(x, boxes, 16, "bicubic")
    expected = TF.resize(x, [16, 16], T.InterpolationMode.BICUBIC, antialias=False).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_color_jitter_equals_torchvision_ops_in_each_samples_own_order():
    x = _images(12, 8).float() / 255
    strengths = (0.4, 0.4, 0.2, 0.1)
    factors, order = sample_jitter(12, strengths, generator=torch.Generator().manual_seed(4))
    active = torch.arange(12) % 3 != 0
    out = color_jitter(x, factors, order, active, strengths)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(12):
        expected = x[i]
        if active[i]:
            for op in order[i].tolist():
                expected = ops[op](expected, float(factors[i, op]))
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)
    # Every image gets its own order: 12 draws of randperm(4) are not all the same.
    assert len({tuple(o) for o in order.tolist()}) > 1


def test_hue_rotation_matches_torchvision_for_large_shifts():
    x = _images(4, 8, seed=5).float() / 255
    factors = torch.tensor([-0.5, -0.25, 0.3, 0.5])
    out = adjust_hue(x, factors)
    for i in range(4):
        torch.testing.assert_close(
            out[i], TF.adjust_hue(x[i], float(factors[i])), atol=1e-5, rtol=0
        )


def test_jitter_factors_are_uniform_on_torchvision_ranges():
    factors, order = sample_jitter(
        20000, (0.4, 0.4, 0.2, 0.1), generator=torch.Generator().manual_seed(6)
    )
    for col, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        f = factors[:, col].double()
        assert float(f.min()) >= lo and float(f.max()) <= hi
        assert float(f.mean()) == pytest.approx((lo + hi) / 2, abs=0.01 * (hi - lo))
        assert float(f.var()) == pytest.approx((hi - lo) ** 2 / 12, rel=0.05)
    # Each op is first in a quarter of the orders.
    first = torch.bincount(order[:, 0], minlength=4).double() / 20000
    torch.testing.assert_close(
        first, torch.full((4,), 0.25, dtype=torch.float64), atol=0.015, rtol=0
    )


def test_gaussian_blur_of_an_impulse_is_the_float64_gaussian_kernel():
    impulse = torch.zeros(2, 3, 21, 21)
    impulse[:, :, 10, 10] = 1.0
    sigma = torch.tensor([0.7, 1.9])
    out = gaussian_blur(impulse, sigma, 13)
    for i, s in enumerate(sigma.tolist()):
        k = torch.tensor(
            [math.exp(-(d**2) / (2 * s**2)) for d in range(-6, 7)], dtype=torch.float64
        )
        k = k / k.sum()
        expected = torch.zeros(21, 21, dtype=torch.float64)
        expected[4:17, 4:17] = torch.outer(k, k)
        torch.testing.assert_close(out[i, 1].double(), expected, atol=1e-6, rtol=0)
    # Constant images stay constant (replicate padding, normalised kernel).
    flat = gaussian_blur(torch.full((1, 3, 9, 9), 0.3), torch.tensor([2.0]), 13)
    torch.testing.assert_close(flat, torch.full((1, 3, 9, 9), 0.3))


def test_flags_follow_the_configured_probabilities_per_view():
    augment = GPUMultiViewAugment(_preset("asymmetric"), 8, (0.5,) * 3, (0.5,) * 3)
    augment(_images(4000, 8), generator=torch.Generator().manual_seed(7))
    n = 4000
    tol = 0.03  # > 4 binomial standard errors for every p here (sd <= 0.0079)
    for params, blur_p, solar_p in zip(augment.last_params, (1.0, 0.1), (0.0, 0.2), strict=True):
        assert float(params["jitter"].float().mean()) == pytest.approx(0.8, abs=tol)
        assert float(params["grayscale"].float().mean()) == pytest.approx(0.2, abs=tol)
        assert float(params["hflip"].float().mean()) == pytest.approx(0.5, abs=tol)
        assert float(params["blur"].float().mean()) == pytest.approx(blur_p, abs=tol)
        assert float(params["solarize"].float().mean()) == pytest.approx(solar_p, abs=tol)
        sigma = params["blur_sigma"]
        assert float(sigma.min()) >= 0.1 and float(sigma.max()) <= 2.0
        assert params["crop"].shape == (n, 4)


def test_flags_describe_what_was_applied_to_each_sample():
    x = _images(64, 8, seed=8)
    source = x.float() / 255
    cases = {
        "hflip": (_identity_view(hflip_p=0.5), lambda v: v.flip(-1)),
        "solarize": (_identity_view(solarize_p=0.5), lambda v: torch.where(v >= 0.5, 1 - v, v)),
        "grayscale": (
            _identity_view(grayscale_p=0.5),
            lambda v: TF.rgb_to_grayscale(v, num_output_channels=3),
        ),
    }
    for flag, (view, effect) in cases.items():
        augment = GPUMultiViewAugment([view], 8, (0,) * 3, (1,) * 3)
        out = augment(x, generator=torch.Generator().manual_seed(9))[0]
        applied = augment.last_params[0][flag]
        assert 10 < int(applied.sum()) < 54
        for i in range(64):
            expected = effect(source[i]) if applied[i] else source[i]
            torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_unknown_view_key_and_wrong_input_are_refused():
    with pytest.raises(ValueError, match="unknown \\['blurr_p'\\]"):
        GPUMultiViewAugment([{**_identity_view(), "blurr_p": 0.5}], 8, (0,) * 3, (1,) * 3)
    augment = GPUMultiViewAugment([_identity_view()], 8, (0,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match="\\(B, 3, H, W\\)"):
        augment(torch.zeros(3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("preset", ["simclr_cifar", "asymmetric"])
def test_the_whole_multiview_augmentation_never_syncs_the_host(preset):
    from sync_probe import HostSyncProbe

    augment = GPUMultiViewAugment(_preset(preset), 16, (0.5,) * 3, (0.25,) * 3)
    images = _images(64, 16)
    with HostSyncProbe() as probe:
        views = augment(images)
    assert probe.syncs == []
    # The probe does see a sync where there is one (the old per-op nonzero indexing).
    with HostSyncProbe() as probe:
        views[0][augment.last_params[0]["blur"]].sum().item()
    assert any("boolean mask" in s for s in probe.syncs)
    assert any("_local_scalar_dense" in s for s in probe.syncs)


def test_output_statistics_match_the_cpu_pil_pipeline():
    """Same images, same preset, many draws: the pixel statistics of the CPU (PIL) views and
    of the batched views agree, per view, channel mean and spread, and the fraction of grey
    images (grayscale p = 0.2 plus jitter's desaturation never gives exactly equal channels)."""
    from PIL import Image

    from infossl.data.transforms import build_multiview_transform

    mean, std = (0.0,) * 3, (1.0,) * 3
    views = _preset("simclr_cifar")
    g = torch.Generator().manual_seed(11)
    # Smooth coloured images (a random low-resolution pattern upsampled), not white noise, so
    # crops, blur and jitter all change the statistics.
    low = torch.rand((48, 3, 4, 4), generator=g)
    images = (torch.nn.functional.interpolate(low, size=16, mode="bilinear") * 255).round()
    images = images.to(torch.uint8).repeat(25, 1, 1, 1)  # 1,200 images, each pattern 25 times
    cpu = build_multiview_transform(views, 16, mean, std)
    torch.manual_seed(12)
    cpu_views = [cpu(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images]
    cpu_first = torch.stack([v[0] for v in cpu_views])
    gpu_first = GPUMultiViewAugment(views, 16, mean, std)(images, generator=g)[0]
    # Tolerances: the channel mean's standard error is ~0.006 here (brightness alone moves an
    # image's mean by up to 80%), so 0.025 is ~4 of them; PIL also rounds to 8 bits after every
    # op (the batched path does not), which moved the means by up to 0.017 over three seeds.
    for name, stat, atol in (
        ("channel mean", lambda v: v.mean(dim=(0, 2, 3)), 0.025),
        ("channel std", lambda v: v.std(dim=(0, 2, 3)), 0.015),
        ("per-image std", lambda v: v.std(dim=(1, 2, 3)).mean(), 0.015),
    ):
        torch.testing.assert_close(stat(gpu_first), stat(cpu_first), atol=atol, rtol=0, msg=name)

    def grey_fraction(v):
        return float(((v[:, 0] - v[:, 1]).abs().amax(dim=(1, 2)) < 1e-2).double().mean())

    assert grey_fraction(gpu_first) == pytest.approx(grey_fraction(cpu_first), abs=0.04)
    assert grey_fraction(gpu_first) == pytest.approx(0.2, abs=0.04)
