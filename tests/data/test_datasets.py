"""Datasets read from small files written in the real on-disk formats."""

import pickle

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from infossl.data.datasets import DataError, build_dataset, dataset_info


@pytest.fixture()
def skip_md5(monkeypatch):
    # torchvision verifies the md5 of the official archives; our tiny files are in the same
    # format but cannot have those checksums.
    for cls in (torchvision.datasets.CIFAR10, torchvision.datasets.STL10):
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)


def _write_cifar(root, folder, train_files, test_file, meta_file, label_key, classes, n=6):
    directory = root / folder
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*train_files, test_file]:
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: [i % classes for i in range(n)],
        }
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle)
    names_key = "fine_label_names" if label_key == "fine_labels" else "label_names"
    with open(directory / meta_file, "wb") as handle:
        pickle.dump({names_key: [f"c{i}" for i in range(classes)]}, handle)


def test_cifar10_from_batch_pickles(tmp_path, skip_md5):
    _write_cifar(
        tmp_path,
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "labels",
        10,
    )
    train = build_dataset("cifar10", tmp_path, "train")
    val = build_dataset("cifar10", tmp_path, "val")
    assert len(train) == 30 and len(val) == 6
    image, label = train[7]
    assert image.size == (32, 32) and label == 1
    assert dataset_info("cifar10", tmp_path)["num_classes"] == 10


def test_cifar100_from_python_pickles(tmp_path, skip_md5):
    _write_cifar(tmp_path, "cifar-100-python", ["train"], "test", "meta", "fine_labels", 100)
    assert len(build_dataset("cifar100", tmp_path, "train")) == 6
    assert build_dataset("cifar100", tmp_path, "val")[3][1] == 3


def test_stl10_binary_layout_and_unlabeled_split(tmp_path, skip_md5):
    directory = tmp_path / "stl10_binary"
    directory.mkdir()
    rng = np.random.default_rng(1)
    sizes = {"train": 4, "test": 3, "unlabeled": 5}
    for split, n in sizes.items():
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(directory / f"{split}_X.bin")
        if split != "unlabeled":
            np.arange(1, n + 1, dtype=np.uint8).tofile(directory / f"{split}_y.bin")
    (directory / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    (directory / "fold_indices.txt").write_text("0 1\n")
    pretrain = build_dataset("stl10", tmp_path, "train")
    assert len(pretrain) == 9  # train + unlabeled
    assert {pretrain[i][1] for i in range(len(pretrain))} == {0, 1, 2, 3, -1}
    assert len(build_dataset("stl10", tmp_path, "train_labeled")) == 4
    assert build_dataset("stl10", tmp_path, "val")[0][0].size == (96, 96)


def _image(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), color).save(path)


def test_image_folder_with_classes_and_holdout(tmp_path):
    for c, color in (("cat", (255, 0, 0)), ("dog", (0, 255, 0))):
        for i in range(10):
            _image(tmp_path / c / f"{i}.png", color)
    train = build_dataset("folder", tmp_path, "train")
    val = build_dataset("folder", tmp_path, "val")
    labelled = build_dataset("folder", tmp_path, "train_labeled")
    assert len(train) == 20 and len(val) == 2 and len(labelled) == 18
    assert dataset_info("folder", tmp_path)["num_classes"] == 2
    image, label = train[15]
    assert label == 1 and image.getpixel((0, 0)) == (0, 255, 0)


def test_image_folder_with_train_and_val_subfolders(tmp_path):
    _image(tmp_path / "train" / "a" / "1.png", (1, 1, 1))
    _image(tmp_path / "train" / "b" / "1.png", (2, 2, 2))
    _image(tmp_path / "val" / "a" / "2.png", (3, 3, 3))
    assert len(build_dataset("folder", tmp_path, "train")) == 2
    assert build_dataset("folder", tmp_path, "val")[0][0].getpixel((0, 0)) == (3, 3, 3)


def test_flat_folder_without_labels(tmp_path):
    for i in range(4):
        _image(tmp_path / f"img{i}.jpg", (i, i, i))
    (tmp_path / "readme.txt").write_text("not an image")
    dataset = build_dataset("folder", tmp_path, "train")
    assert len(dataset) == 4 and {dataset[i][1] for i in range(4)} == {-1}
    assert dataset_info("folder", tmp_path)["num_classes"] is None


def test_digits_split_sizes_labels_and_images():
    train = build_dataset("digits", "unused", "train")
    val = build_dataset("digits", "unused", "val")
    assert (len(train), len(val)) == (1437, 360)
    assert sorted(set(val.targets)) == list(range(10))
    image, _ = train[0]
    assert image.size == (32, 32) and image.mode == "RGB"
    # The normalisation constants were computed from this split.
    pixels = torch.tensor(np.stack([np.asarray(im) for im in train.images]), dtype=torch.float64)
    info = dataset_info("digits", "unused")
    assert float(pixels.mean() / 255) == pytest.approx(info["mean"][0], abs=1e-3)
    assert float(pixels.std() / 255) == pytest.approx(info["std"][0], abs=1e-3)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_missing_dataset_says_where_it_looked_and_how_to_fix(tmp_path, name):
    with pytest.raises(DataError, match="--download") as err:
        build_dataset(name, tmp_path / "nothing", "train")
    assert str(tmp_path / "nothing") in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_dataset("folder", tmp_path / "nope", "train")


def test_val_folder_without_train_folder_is_a_data_error(tmp_path):
    _image(tmp_path / "val" / "a" / "1.png", (1, 1, 1))
    _image(tmp_path / "a" / "2.png", (1, 1, 1))
    with pytest.raises(DataError, match="no train/ folder") as err:
        build_dataset("folder", tmp_path, "train")
    assert str(tmp_path / "train") in str(err.value)


def test_class_folder_without_images_is_a_data_error(tmp_path):
    _image(tmp_path / "cat" / "1.png", (1, 1, 1))
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match="remove empty class folders"):
        build_dataset("folder", tmp_path, "train")


def test_failed_download_is_a_one_line_data_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DataError, match="downloading CIFAR-10 .* failed") as err:
        build_dataset("cifar10", tmp_path, "train", download=True)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_dataset_info_statistics_match_solo_learn_and_imagenet(tmp_path):
    assert dataset_info("cifar10", tmp_path)["mean"] == (0.4914, 0.4822, 0.4465)
    assert dataset_info("cifar100", tmp_path)["std"] == (0.2673, 0.2564, 0.2762)
    stl = dataset_info("stl10", tmp_path)
    assert (stl["image_size"], stl["num_classes"]) == (96, 10)
    assert dataset_info("folder", tmp_path)["mean"] == (0.485, 0.456, 0.406)
    assert dataset_info("folder", tmp_path)["image_size"] is None
