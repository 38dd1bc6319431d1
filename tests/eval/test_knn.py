"""Weighted kNN against hand-computed votes."""

import math

import pytest
import torch

from infossl.eval.knn import knn_predictions, knn_top1, queries_per_chunk


def _unit(angles):
    angles = torch.as_tensor(angles, dtype=torch.float32)
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def _bank():
    # Query at angle 0. Class 0: two neighbours at similarity 1.0; class 1: three neighbours at
    # similarity cos(0.451) = 0.9; class 2: one far point at similarity cos(2.5) = -0.80.
    angles = torch.tensor([0.0, 0.0, 0.451, -0.451, 0.451, 2.5])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    return _unit(angles) * torch.tensor([[3.0], [0.5], [1.0], [2.0], [7.0], [1.0]]), labels


def test_weights_exp_similarity_over_temperature_beat_a_plain_majority():
    bank, labels = _bank()
    query = torch.tensor([[2.0, 0.0]])
    # T = 0.07: class 0 weight 2 exp(1 / 0.07) = 3.2e6 > class 1 3 exp(0.9 / 0.07) = 1.2e6.
    s1 = math.cos(0.451)
    assert 2 * math.exp(1 / 0.07) > 3 * math.exp(s1 / 0.07)
    assert knn_predictions(bank, labels, query, k=5, temperature=0.07).tolist() == [0]
    # T = 10: weights ~equal, so the three class-1 neighbours outvote the two class-0 ones.
    assert 2 * math.exp(1 / 10) < 3 * math.exp(s1 / 10)
    assert knn_predictions(bank, labels, query, k=5, temperature=10.0).tolist() == [1]
    # k = 2: only the two class-0 points vote, whatever the temperature.
    assert knn_predictions(bank, labels, query, k=2, temperature=10.0).tolist() == [0]


def test_top1_is_the_fraction_of_matching_predictions():
    bank, labels = _bank()
    queries = torch.tensor([[2.0, 0.0], [2.0, 0.0], [math.cos(2.5), math.sin(2.5)]])
    # Predictions (k=1): 0, 0, 2; labels 0, 1, 2 -> 2 of 3 correct.
    assert knn_top1(bank, labels, queries, torch.tensor([0, 1, 2]), k=1) == pytest.approx(2 / 3)


def test_k_larger_than_the_bank_uses_every_training_sample():
    bank, labels = _bank()
    query = torch.tensor([[1.0, 0.0]])
    assert knn_top1(bank, labels, query, torch.tensor([0]), k=200, temperature=0.07) == 1.0
    assert knn_top1(bank, labels, query, torch.tensor([1]), k=200, temperature=10.0) == 1.0


def test_chunked_queries_give_the_same_predictions_as_one_chunk():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 8, generator=g), torch.randn(257, 8, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    # 300 training rows and max_elements 300 -> one query per chunk.
    assert queries_per_chunk(300, 20, 5, 300) == 1
    one_by_one = knn_predictions(train, labels, test, 20, 0.07, 5, max_elements=300)
    all_at_once = knn_predictions(train, labels, test, 20, 0.07, 5, max_elements=10**9)
    assert torch.equal(one_by_one, all_at_once)


def test_knn_is_perfect_on_separated_clusters_and_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 10
    labels = torch.arange(4).repeat_interleave(50)
    x = centers[labels] + torch.randn(200, 16, generator=g)
    assert knn_top1(x[::2], labels[::2], x[1::2], labels[1::2], k=20) == 1.0
    noise = torch.randn(2000, 16, generator=g)
    random_labels = torch.randint(0, 4, (2000,), generator=g)
    chance = knn_top1(noise[:1000], random_labels[:1000], noise[1000:], random_labels[1000:], k=20)
    assert chance == pytest.approx(0.25, abs=0.05)  # 3.6 binomial std of 1000 draws
