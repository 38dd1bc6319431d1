"""The 2-D embedding map: PCA coordinates against an SVD by hand, the PNG and TensorBoard figure,
and the projector's files (one label per point, the L2-normalised features)."""

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from infossl.eval.embedding_map import embedding_maps, pca_2d


def test_pca_2d_is_the_projection_on_the_two_leading_singular_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    got = pca_2d(x)
    signs = np.sign((got * expected).sum(0))  # each component is defined up to its sign
    np.testing.assert_allclose(got * signs, expected, atol=1e-10)


def _read_tsv(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_maps_and_projector_files(tmp_path):
    torch.manual_seed(0)
    labels = torch.arange(3).repeat_interleave(40)
    features = torch.randn(120, 8) + 4 * torch.nn.functional.one_hot(labels, 8)
    out = embedding_maps(
        features, labels, tmp_path / "eval", "digits_linear", log_dir=tmp_path, step=7,
        max_points=100, seed=0,
    )  # fmt: skip
    png = tmp_path / "eval" / "digits_linear_embedding_pca.png"
    assert out["pca"] == str(png)
    assert Image.open(png).size == (720, 720)  # 6 x 6 inches at 120 dpi
    assert out["projector_points"] == 100

    projector = tmp_path / "00007" / "digits_linear_val_features"
    metadata = (projector / "metadata.tsv").read_text().splitlines()
    tensors = np.array(_read_tsv(projector / "tensors.tsv"), dtype=float)
    assert len(metadata) == len(tensors) == 100  # one label per point
    # The seeded subset, in the original order, L2-normalised.
    chosen = torch.randperm(120, generator=torch.Generator().manual_seed(0))[:100].sort().values
    assert metadata == [str(int(v)) for v in labels[chosen]]
    expected = torch.nn.functional.normalize(features[chosen], dim=1).numpy()
    np.testing.assert_allclose(tensors, expected, atol=1e-6)
    assert "digits_linear_val_features" in (tmp_path / "projector_config.pbtxt").read_text()

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "eval/digits_linear/embedding_pca" in events.Tags()["images"]
    assert events.Images("eval/digits_linear/embedding_pca")[0].step == 7


def test_without_a_log_dir_only_the_png_is_written(tmp_path):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = embedding_maps(torch.randn(6, 4), labels, tmp_path, "x")
    assert "projector_points" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"x_embedding_{name}.png" for name in out
    )
