"""The tint nuisance: independent of the label, and plainly visible in the pixels."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from benchmarks._downstream_common import image_tensors
from infossl.data.datasets import DigitsDataset
from infossl.data.nuisance import TINTS, TintNuisance, draw_nuisance, tint_nuisance


def test_tint_is_independent_of_the_label_and_a_probe_on_raw_pixels_reads_it():
    images, labels = image_tensors("digits", "./data", "train", 8)
    tinted, s = tint_nuisance(images, 4, seed=0)
    # empirical I(s; y) from the contingency table: near 0 (a plug-in estimate of 4 x 10 cells
    # on 1 437 samples is biased up by about (4-1)(10-1) / (2 N) = 0.009 nats)
    joint = np.histogram2d(s.numpy(), labels.numpy(), bins=(4, 10))[0] / len(s)
    ps, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (ps @ py)[nz])).sum())
    assert mi < 0.03
    # the digit's shape is unchanged: channel-wise tint of the brightness above black
    assert torch.allclose((tinted[s == 0, 0] + 1), (images[s == 0, 0] + 1))
    x = tinted.flatten(1).numpy()
    probe = LogisticRegression(max_iter=500).fit(x[:1000], s[:1000].numpy())
    assert probe.score(x[1000:], s[1000:].numpy()) > 0.95  # chance is 0.25


# ---- the dataset form: data.nuisance: tint ---------------------------------------------------
def _recover_tint(pixels: torch.Tensor, num_values: int = 4) -> torch.Tensor:
    """s from (N, 3, H, W) non-negative pixels: the channels whose brightest pixel is above the
    midpoint of the three channels' brightest are the tint's 1.0 channels."""
    peak = pixels.flatten(2).amax(2)
    mid = (peak.amax(1, keepdim=True) + peak.amin(1, keepdim=True)) / 2
    pattern = peak > mid
    bright = TINTS[:num_values] > 0.5
    match = (pattern[:, None, :] == bright[None]).all(2)
    assert match.sum(1).eq(1).all(), "a pixel pattern matches no tint or several"
    return match.float().argmax(1)


def _tinted_digits(split="train", seed=0):
    return TintNuisance(DigitsDataset(split), None, 4, seed)


def test_dataset_nuisance_is_independent_of_the_label_by_a_chi_square_test():
    from scipy.stats import chi2_contingency

    ds = _tinted_digits()
    labels = np.asarray(ds.dataset.targets)
    s = ds.nuisance.numpy()
    table = np.zeros((4, 10), dtype=np.int64)
    np.add.at(table, (s, labels), 1)
    assert table.sum() == 1437 and table.min() >= 20  # every (s, digit) cell is populated
    chi2, p, dof, _ = chi2_contingency(table)
    assert dof == 27
    assert p > 0.05, (chi2, p)  # this draw: chi2 = 22.8, p = 0.70
    # the same test flags a nuisance that follows the label
    dependent = np.zeros((4, 10), dtype=np.int64)
    np.add.at(dependent, (labels % 4, labels), 1)
    assert chi2_contingency(dependent)[1] < 1e-100
    # s is uniform over the 4 tints (at most 3 standard deviations off 1437 / 4)
    assert np.abs(np.bincount(s, minlength=4) - 1437 / 4).max() < 3 * np.sqrt(1437 * 3 / 16)


def test_dataset_nuisance_is_the_benchmarks_draw_and_is_read_back_exactly_from_every_image():
    ds = _tinted_digits()
    images, _ = image_tensors("digits", "./data", "train", 8)
    _, benchmark_s = tint_nuisance(images, 4, seed=0)
    assert torch.equal(ds.nuisance, benchmark_s)  # one construction, one draw of s
    items = [ds[i] for i in range(len(ds))]
    assert [item[1] for item in items] == ds.dataset.targets
    assert [item[3] for item in items] == ds.nuisance.tolist()
    pixels = torch.stack([torch.tensor(np.array(item[0])).permute(2, 0, 1) for item in items])
    assert torch.equal(_recover_tint(pixels.float()), ds.nuisance)  # all 1,437 images
    # the tint scales each channel of the grey digit: its shape is unchanged
    grey = np.array(ds.dataset.images[0])[..., :1].astype(np.float32)
    expected = np.rint(grey * TINTS[int(ds.nuisance[0])].numpy())
    assert np.array_equal(np.array(items[0][0]).astype(np.float32), expected)


def test_training_batches_carry_each_views_own_tint_through_the_augmentations():
    from infossl import config as C
    from infossl.data.datamodule import SSLDataModule
    from infossl.data.datasets import DIGITS_STATS

    cfg = C.apply_overrides(
        C.default_config("infonce", "digits"),
        ["data.nuisance=tint", "data.num_workers=0", "data.batch_size=256"],
    )
    cfg = C.normalize_regularizers(C.resolve_views(C.resolve_interpolations(cfg)))
    C.validate(cfg)
    datamodule = SSLDataModule(C.to_plain(cfg))
    datamodule.setup()
    mean = torch.tensor(DIGITS_STATS[0])[:, None, None]
    std = torch.tensor(DIGITS_STATS[1])[:, None, None]
    seen = 0
    for batch in datamodule.train_dataloader():
        assert batch.nuisance.dtype == torch.int64 and batch.nuisance.shape == (256,)
        for view in batch.inputs:  # both views: crops and brightness/contrast jitter
            assert torch.equal(_recover_tint(view * std + mean), batch.nuisance)
        seen += len(batch.nuisance)
    assert seen == 5 * 256  # 1,437 images, drop_last
    val = next(iter(datamodule.val_dataloader()))
    assert torch.equal(val.nuisance, _tinted_digits("val", seed=1).nuisance[:256])


def test_views_made_on_the_device_keep_the_batches_nuisance():
    """data.augment_on=gpu (run here on the CPU): the loader yields uint8 tinted images and s,
    the batched augmentation makes the views and passes s on beside them."""
    from infossl import config as C
    from infossl.data.datamodule import SSLDataModule
    from infossl.speed import resolve_speed

    cfg = C.apply_overrides(
        C.default_config("infonce", "digits"),
        ["data.nuisance=tint", "data.augment_on=gpu", "data.num_workers=0", "data.batch_size=64"],
    )
    cfg = C.to_plain(C.normalize_regularizers(C.resolve_views(C.resolve_interpolations(cfg))))
    datamodule = SSLDataModule(cfg, resolve_speed(cfg, "cpu"))
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.inputs.dtype == torch.uint8
    assert torch.equal(_recover_tint(batch.inputs.float()), batch.nuisance)
    augmented = datamodule.augment_batch(batch)
    assert augmented.nuisance is batch.nuisance and len(augmented.inputs) == 2
    mean = torch.tensor(datamodule.mean).view(1, 3, 1, 1)
    std = torch.tensor(datamodule.std).view(1, 3, 1, 1)
    for view in augmented.inputs:
        assert torch.equal(_recover_tint(view * std + mean), batch.nuisance)


def test_each_split_gets_its_own_draw_from_the_one_rule_training_and_evaluation_share():
    import pytest

    from infossl.data.nuisance import nuisance_dataset

    base = DigitsDataset("train")
    splits = ("train", "train_labeled", "val")
    draws = {split: nuisance_dataset(base, None, split, 4).nuisance for split in splits}
    assert torch.equal(draws["train"], draws["train_labeled"])  # one training set, one draw
    assert torch.equal(draws["val"], draw_nuisance(1437, 4, seed=1))
    assert (draws["val"] != draws["train"]).float().mean() > 0.6  # independent: 3/4 differ
    assert nuisance_dataset(base, None, "val", 6).nuisance.max() == 5
    with pytest.raises(ValueError, match="unknown split 'test'"):
        nuisance_dataset(base, None, "test", 4)
    # STL-10's labelled images are the first 5,000 of its training split (train+unlabeled,
    # 105,000): a shorter draw is the start of the longer one, so they keep their training s
    assert torch.equal(draw_nuisance(5000, 4, seed=0), draw_nuisance(105000, 4, seed=0)[:5000])
