"""Linear probe: separable data is learned, random labels are not, top-5 is defined."""

import pytest
import torch

from infossl.eval.linear import accuracy, train_linear_probe


def _blobs(n, classes, dim, seed, scale=100.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 3
    labels = torch.randint(0, classes, (n,), generator=g)
    return (centers[labels] + 0.3 * torch.randn(n, dim, generator=g)) * scale, labels


def test_probe_learns_separable_features_even_at_a_large_scale():
    x, y = _blobs(600, 6, 12, seed=0)
    result = train_linear_probe(x[:400], y[:400], x[400:], y[400:], 6, epochs=30, batch_size=64)
    assert result["top1"] == 1.0
    assert result["train_loss"][-1] < result["train_loss"][0]


def test_probe_is_near_chance_on_random_labels():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 8, generator=g)
    y = torch.randint(0, 4, (2000,), generator=g)
    result = train_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], 4, epochs=10)
    assert result["top1"] == pytest.approx(0.25, abs=0.05)


def test_top5_counts_the_label_among_five_best_logits():
    logits = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    labels = torch.tensor([4, 5])  # 5th best (counted) and 6th best (not)
    result = accuracy(logits, labels, 6)
    assert result == {"top1": 0.0, "top5": 0.5}
    assert "top5" not in accuracy(logits[:, :3], torch.tensor([0, 1]), 3)
