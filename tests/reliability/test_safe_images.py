"""A folder dataset with one truncated JPEG and one text file named .jpg: under 'skip' every
batch stays full and the count is exactly 2 with two DataLoader worker processes (adjacent bad
files included); under 'error' the main process gets BadImageError naming the file."""

import io

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import ImageFolder

from infossl.reliability.safe_images import (
    BadImageError,
    SafeImageLoader,
    SubstituteBadItems,
    collate_with_skips,
    skip_transform,
)


def _jpeg_bytes(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _folder(root, adjacent: bool):
    """10 good JPEGs in two classes plus a truncated JPEG and a text file named .jpg."""
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(5):
            (root / f"c{c}" / f"{i}.jpg").write_bytes(_jpeg_bytes((40 * i, 100 * c, 9)))
    whole = _jpeg_bytes((200, 10, 10))
    truncated = root / "c0" / "5_truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    text = root / ("c0" if adjacent else "c1") / "6_notes.jpg"
    text.write_text("not an image")
    return root, truncated, text


def _loader(root, policy, workers=2):
    transform = transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])
    folder = ImageFolder(root, loader=SafeImageLoader(policy), transform=skip_transform(transform))
    return DataLoader(
        SubstituteBadItems(folder),
        batch_size=4,
        num_workers=workers,
        collate_fn=collate_with_skips,
        multiprocessing_context="fork",
    )


@pytest.mark.parametrize("adjacent", [False, True])
def test_skip_counts_each_bad_file_once_across_worker_processes(tmp_path, adjacent):
    root, _, _ = _folder(tmp_path / "images", adjacent)
    batches = list(_loader(root, "skip"))
    assert sum(int(b.skipped) for b in batches) == 2
    assert [b.inputs.shape[0] for b in batches] == [4, 4, 4]  # 12 files, every batch full
    assert all(torch.isfinite(b.inputs).all() for b in batches)


def test_error_surfaces_in_the_main_process_naming_the_file(tmp_path):
    root, truncated, _ = _folder(tmp_path / "images", adjacent=False)
    with pytest.raises(BadImageError) as err:
        list(_loader(root, "error"))
    assert f"unreadable image {truncated}" in str(err.value)


def test_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch):
    # PIL refuses images over 2 x MAX_IMAGE_PIXELS with DecompressionBombError (not an
    # OSError); a 16 x 16 = 256-pixel file is such a bomb when the limit is 100 pixels.
    path = tmp_path / "bomb.png"
    Image.new("RGB", (16, 16)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.warns(UserWarning, match=f"skipping unreadable image {path}"):
        assert SafeImageLoader("skip")(str(path)) is None
    with pytest.raises(BadImageError, match=f"unreadable image {path}.*exceeds limit"):
        SafeImageLoader("error")(str(path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 256 pixels: fine again
    assert SafeImageLoader("error")(str(path)).size == (16, 16)
