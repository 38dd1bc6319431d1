"""Linear probe: separable data is learned, random labels are not, top-5 is defined, the
crop-flip path equals the precomputed path, and the backbone stays frozen."""

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from infossl.eval.linear import (
    accuracy,
    cosine_lr,
    extract_features,
    train_linear_probe,
    train_linear_probe_on_images,
)

torch.set_num_threads(1)


def _blobs(n, classes, dim, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 3
    labels = torch.randint(0, classes, (n,), generator=g)
    return (centers[labels] + 0.3 * torch.randn(n, dim, generator=g)) * scale, labels


@pytest.mark.parametrize("feature_norm", ["none", "batchnorm"])
def test_probe_reaches_full_accuracy_on_linearly_separable_features(feature_norm):
    x, y = _blobs(600, 6, 12, seed=0)
    result = train_linear_probe(
        x[:400], y[:400], x[400:], y[400:], 6, epochs=10, batch_size=64, feature_norm=feature_norm
    )
    assert result["top1"] == 1.0 and result["top5"] == 1.0
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 10 and losses[-1] < 0.1 * losses[0]
    assert result["history"][-1]["train_top1"] == 1.0


def test_probe_is_near_chance_on_random_labels():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 8, generator=g)
    y = torch.randint(0, 4, (2000,), generator=g)
    result = train_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], 4, epochs=5)
    assert result["top1"] == pytest.approx(0.25, abs=0.05)  # 3.6 binomial std of 1000 draws
    assert result["top5"] is None  # 4 classes: top-5 would be trivially 1


def test_top5_counts_the_label_among_five_best_logits():
    logits = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    labels = torch.tensor([4, 5])  # 5th best (counted) and 6th best (not)
    assert accuracy(logits, labels, 6) == {"top1": 0.0, "top5": 0.5}
    assert accuracy(logits[:, :3], torch.tensor([0, 1]), 3) == {"top1": 0.5, "top5": None}


def test_cosine_schedule_runs_from_lr_to_min_lr_and_history_records_it():
    assert cosine_lr(0.2, 0.002, 0, 100) == 0.2
    assert cosine_lr(0.2, 0.002, 50, 100) == pytest.approx(0.101)
    assert cosine_lr(0.2, 0.002, 100, 100) == pytest.approx(0.002)
    x, y = _blobs(64, 3, 4, seed=2)
    history = train_linear_probe(x, y, x, y, 3, epochs=4, batch_size=32, lr=0.1, min_lr=0.0)[
        "history"
    ]
    # 2 steps per epoch, 8 steps: epoch e's last step is 2e + 1.
    expected = [0.05 * (1 + math.cos(math.pi * (2 * e + 1) / 8)) for e in range(4)]
    assert [h["lr"] for h in history] == pytest.approx(expected)


def test_same_seed_same_result_and_global_rng_untouched():
    x, y = _blobs(200, 5, 6, seed=3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_linear_probe(x[:150], y[:150], x[150:], y[150:], 5, epochs=3, seed=7)
    after = torch.rand(1)
    b = train_linear_probe(x[:150], y[:150], x[150:], y[150:], 5, epochs=3, seed=7)
    assert a == b
    assert torch.equal(before, after)


class _SameOrderAsFeaturePath:
    """Batch sampler drawing the permutations ``train_linear_probe`` draws for ``seed``."""

    def __init__(self, n, batch_size, seed):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return -(-self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        return iter([batch.tolist() for batch in order.split(self.batch_size)])


def _frozen_backbone():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU())
    backbone[1].running_mean.fill_(0.5)  # any training-mode forward would move these
    return backbone


def test_crop_flip_path_equals_precomputed_path_and_leaves_backbone_frozen():
    x, y = _blobs(240, 4, 10, seed=4)
    backbone = _frozen_backbone()
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    data = TensorDataset(x, y)
    settings = dict(epochs=3, lr=0.05, min_lr=0.0, seed=5)
    feats, labels = extract_features(backbone, DataLoader(data, batch_size=50), "cpu")
    precomputed = train_linear_probe(
        feats[:200], labels[:200], feats[200:], labels[200:], 4, batch_size=32, **settings
    )
    train = DataLoader(
        TensorDataset(x[:200], y[:200]), batch_sampler=_SameOrderAsFeaturePath(200, 32, seed=5)
    )
    val = DataLoader(TensorDataset(x[200:], y[200:]), batch_size=16)
    on_images = train_linear_probe_on_images(backbone, train, val, 4, 16, "cpu", **settings)
    assert on_images["top1"] == precomputed["top1"]
    for h_img, h_feat in zip(on_images["history"], precomputed["history"], strict=True):
        assert h_img["train_loss"] == pytest.approx(h_feat["train_loss"], rel=1e-5)
    assert not backbone.training
    assert all(torch.equal(state[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is None for p in backbone.parameters())


def test_crop_flip_path_checks_the_declared_feature_dim():
    backbone = _frozen_backbone()
    loader = DataLoader(TensorDataset(torch.randn(8, 10), torch.zeros(8).long()), batch_size=4)
    with pytest.raises(ValueError, match="16 features"):
        train_linear_probe_on_images(backbone, loader, loader, 2, 32, "cpu", epochs=1)


def test_extract_features_autocasts_for_bf16_mixed_and_returns_float32():
    backbone = nn.Linear(4, 3)
    loader = DataLoader(TensorDataset(torch.randn(10, 4), torch.arange(10)), batch_size=4)
    full, labels = extract_features(backbone, loader, "cpu", "32")
    half, _ = extract_features(backbone, loader, "cpu", "bf16-mixed")
    assert full.dtype == half.dtype == torch.float32 and full.shape == (10, 3)
    assert labels.tolist() == list(range(10))
    assert not torch.equal(full, half)  # the matmul ran in bfloat16
    assert torch.allclose(full, half, atol=0.05)
