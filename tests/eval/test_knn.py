"""Weighted kNN against a hand-computed vote."""

import math

import pytest
import torch

from infossl.eval.knn import knn_top1


def test_weighted_vote_matches_hand_computation():
    # Bank on the unit circle: two class-0 points near the query, three class-1 points further.
    angles = torch.tensor([0.10, -0.10, 0.9, 1.0, 1.1], dtype=torch.float64)
    bank = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = torch.tensor([[math.cos(0.45), math.sin(0.45)]], dtype=torch.float64)
    t = 0.07
    weights = torch.exp(torch.cos(angles - 0.45) / t)
    votes = [float(weights[labels == c].sum()) for c in (0, 1)]
    expected_class = int(votes[1] > votes[0])
    assert knn_top1(bank, labels, query, torch.tensor([expected_class]), k=5, temperature=t) == 1.0
    assert (
        knn_top1(bank, labels, query, torch.tensor([1 - expected_class]), k=5, temperature=t) == 0.0
    )
    # With k = 2 only the two nearest neighbours vote.
    nearest = torch.cos(angles - 0.45).topk(2).indices
    majority = int(labels[nearest].float().mean().round())
    assert knn_top1(bank, labels, query, torch.tensor([majority]), k=2, temperature=t) == 1.0


def test_knn_is_perfect_on_separated_clusters_and_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 10
    labels = torch.arange(4).repeat_interleave(50)
    x = centers[labels] + torch.randn(200, 16, generator=g)
    assert knn_top1(x[::2], labels[::2], x[1::2], labels[1::2], k=20) == 1.0
    noise = torch.randn(2000, 16, generator=g)
    random_labels = torch.randint(0, 4, (2000,), generator=g)
    chance = knn_top1(noise[:1000], random_labels[:1000], noise[1000:], random_labels[1000:], k=20)
    assert chance == pytest.approx(0.25, abs=0.05)
