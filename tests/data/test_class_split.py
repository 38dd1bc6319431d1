"""Class-disjoint splits: first half of the classes trains, the rest is the retrieval test."""

import numpy as np
import pytest
import torch
from PIL import Image

from infossl.config import ConfigError, apply_overrides, default_config, resolve_views, to_plain
from infossl.data.class_split import class_split_dataset
from infossl.data.datamodule import SSLDataModule


def test_digits_split_is_0_to_4_train_and_5_to_9_test_over_all_1797_images():
    train = class_split_dataset("digits", ".", "train", 10)
    test = class_split_dataset("digits", ".", "test", 10)
    assert set(train.targets) == {0, 1, 2, 3, 4}
    assert set(test.targets) == {5, 6, 7, 8, 9}
    assert len(train) + len(test) == 1797
    # The stored labels are the items' labels.
    for i in (0, len(test) // 2, len(test) - 1):
        assert test[i][1] == test.targets[i]


def test_folder_laid_out_like_cub_splits_by_sorted_class_folder(tmp_path):
    names = ["001.Albatross", "002.Auklet", "003.Blackbird", "004.Bobolink"]
    for c, name in enumerate(names):
        (tmp_path / name).mkdir()
        for k in range(c + 1):
            Image.new("RGB", (8, 8), (40 * c, 0, 0)).save(tmp_path / name / f"{k}.png")
    train = class_split_dataset("folder", tmp_path, "train", 4)
    test = class_split_dataset("folder", tmp_path, "test", 4)
    assert sorted(train.targets) == [0, 1, 1]
    assert sorted(test.targets) == [2, 2, 2, 3, 3, 3, 3]
    image, label = test[0]
    assert label == 2 and np.asarray(image)[0, 0, 0] == 80


def test_datamodule_trains_on_five_digit_classes_and_validates_on_the_other_five():
    cfg = to_plain(resolve_views(default_config("dml-ce", "digits")))
    dm = SSLDataModule(cfg)
    dm.setup("fit")
    assert dm.num_classes == 5
    counts = dm.train_label_counts()
    assert counts.shape == (5,) and int(counts.sum()) == len(dm.train_set)
    assert set(dm.val_set.targets) == {5, 6, 7, 8, 9}


def test_m_per_class_sampler_gives_p_by_k_batches_of_training_classes():
    cfg = default_config("dml-pairwise", "digits")
    cfg = apply_overrides(
        cfg,
        [
            "data.sampler=m_per_class",
            "data.m_per_class=16",
            "data.batch_size=64",
            "data.num_workers=0",
        ],
    )
    dm = SSLDataModule(to_plain(resolve_views(cfg)))
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_set) // 64
    for batch in batches[:3]:
        counts = sorted(torch.bincount(batch.labels, minlength=5).tolist())
        assert counts == [0, 16, 16, 16, 16]  # 4 of the 5 training classes, 16 images each


def test_m_per_class_that_cannot_fill_a_batch_is_a_config_error():
    cfg = default_config("dml-pairwise", "digits")
    cfg = apply_overrides(cfg, ["data.sampler=m_per_class", "data.m_per_class=4"])  # 5 x 4 < 128
    dm = SSLDataModule(to_plain(resolve_views(cfg)))
    with pytest.raises(ConfigError, match="5 classes x 4 >= 128"):
        dm.setup("fit")
