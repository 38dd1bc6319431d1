"""Recall@K against values computed by hand on a constructed embedding set."""

import math

import pytest
import torch

from infossl.eval.retrieval import recall_at_k

# Points on a line; by hand (nearest other points, nearest first):
#   0.0 (a): 1.0 b, 3.0 a        -> miss@1, hit@2
#   1.0 (b): 0.0 a, 3.0 a, 4.0 b -> miss@1, miss@2, hit@4
#   3.0 (a): 4.0 b, 1.0 b, 0.0 a -> miss@1, miss@2, hit@4
#   4.0 (b): 3.0 a, 1.0 b        -> miss@1, hit@2
#  10.0 (c): 11.5 c              -> hit@1
#  11.5 (c): 10.0 c              -> hit@1
X = [0.0, 1.0, 3.0, 4.0, 10.0, 11.5]
Y = torch.tensor([0, 1, 0, 1, 2, 2])
BY_HAND = {1: 2 / 6, 2: 4 / 6, 4: 6 / 6}


def test_recall_at_k_l2_equals_hand_computed_values():
    z = torch.tensor([[x, 0.0] for x in X])
    assert recall_at_k(z, Y, (1, 2, 4), "l2") == pytest.approx(BY_HAND, abs=1e-12)


def test_recall_at_k_cosine_uses_angles_and_ignores_norms():
    # The same points as angles (0.1 rad per unit) on circles of different radii: cosine
    # retrieval gives the hand-computed values, L2 on the raw vectors does not.
    radii = [1.0, 6.0, 0.3, 2.0, 9.0, 0.5]
    z = torch.tensor(
        [[r * math.cos(0.1 * x), r * math.sin(0.1 * x)] for x, r in zip(X, radii, strict=True)]
    )
    assert recall_at_k(z, Y, (1, 2, 4), "cosine") == pytest.approx(BY_HAND, abs=1e-12)
    assert recall_at_k(z, Y, (1, 2, 4), "l2") != pytest.approx(BY_HAND, abs=1e-12)


def test_recall_needs_more_images_than_k():
    with pytest.raises(ValueError, match="more than 6"):
        recall_at_k(torch.randn(6, 2), Y, (6,), "l2")
