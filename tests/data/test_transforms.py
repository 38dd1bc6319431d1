"""Augmentation pipelines built from the config presets."""

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from infossl.config import CONFIG_DIR
from infossl.data.transforms import (
    build_crop_flip_transform,
    build_eval_transform,
    build_multiview_transform,
    build_view_transform,
)


def _views(name):
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "augmentations" / f"{name}.yaml"))


@pytest.mark.parametrize("preset", ["simclr_cifar", "asymmetric", "digits"])
def test_presets_give_two_normalised_views_of_the_configured_size(preset):
    transform = build_multiview_transform(_views(preset), 24, (0.5,) * 3, (0.25,) * 3)
    views = transform(Image.new("RGB", (40, 40), (128, 128, 128)))
    assert len(views) == 2
    assert all(v.shape == (3, 24, 24) and v.dtype == torch.float32 for v in views)
    # A black image stays black through crop, jitter, grayscale, blur, solarize and flip, so
    # every view must be exactly (0 - mean) / std: the normalisation is applied once, last.
    black = transform(Image.new("RGB", (40, 40), (0, 0, 0)))
    for view in black:
        torch.testing.assert_close(view, torch.full((3, 24, 24), -2.0))


def test_asymmetric_preset_is_corinfomax_recipe():
    first, second = _views("asymmetric")
    assert (first["blur_p"], second["blur_p"]) == (1.0, 0.1)
    assert (first["solarize_p"], second["solarize_p"]) == (0.0, 0.2)
    assert first["jitter"] == [0.4, 0.4, 0.2, 0.1] and first["grayscale_p"] == 0.2


def test_identity_view_normalises_with_the_given_statistics():
    view = {
        "crop_scale": [1.0, 1.0],
        "crop_interpolation": "bilinear",
        "hflip_p": 0.0,
        "jitter": [0, 0, 0, 0],
        "jitter_p": 0.0,
        "grayscale_p": 0.0,
        "blur_p": 0.0,
        "blur_sigma": [0.1, 2.0],
        "solarize_p": 0.0,
    }
    out = build_view_transform(view, 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(
        Image.new("RGB", (8, 8), (255, 0, 51))
    )
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([2.0, -2.0, -1.2]))


def test_solarize_probability_one_inverts_bright_pixels():
    view = {
        "crop_scale": [1.0, 1.0],
        "crop_interpolation": "bilinear",
        "hflip_p": 0.0,
        "jitter": [0, 0, 0, 0],
        "jitter_p": 0.0,
        "grayscale_p": 0.0,
        "blur_p": 0.0,
        "blur_sigma": [0.1, 2.0],
        "solarize_p": 1.0,
    }
    out = build_view_transform(view, 4, (0, 0, 0), (1, 1, 1))(Image.new("RGB", (4, 4), (200,) * 3))
    assert float(out[0, 0, 0]) == pytest.approx(55 / 255)


def test_unknown_view_key_is_refused():
    with pytest.raises(ValueError, match="unknown \\['blurr_p'\\]"):
        build_view_transform({**_views("digits")[0], "blurr_p": 0.5}, 8, (0,) * 3, (1,) * 3)


def test_eval_transform_resizes_short_side_to_36_then_centre_crops_32():
    transform = build_eval_transform(32, (0,) * 3, (1,) * 3)
    assert transform.transforms[0].size == 36  # int(32 * 8 / 7), as CorInfoMax's test transform
    # A 36x36 image with a 2-pixel white border: the centre crop removes exactly the border.
    image = Image.new("RGB", (36, 36), (255, 255, 255))
    image.paste((0, 0, 0), (2, 2, 34, 34))
    assert float(transform(image).max()) == 0.0
    assert transform(Image.new("RGB", (50, 70))).shape == (3, 32, 32)


def test_crop_flip_transform_gives_normalised_crops_of_the_size():
    transform = build_crop_flip_transform(16, (0.5,) * 3, (0.5,) * 3)
    out = transform(Image.new("RGB", (40, 30), (255, 255, 255)))
    torch.testing.assert_close(out, torch.ones(3, 16, 16))
