"""Collapse diagnostics against constructions whose answers are known in closed form."""

import math

import numpy as np
import pytest
import torch

from infossl.eval import diagnostics as D


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_covariance_rank_of_data_with_known_rank(rank):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(400, rank, generator=g) @ torch.randn(rank, 16, generator=g) + 5.0
    assert D.covariance_rank(x) == rank  # the constant offset is removed by centring


def test_effective_rank_isotropic_is_close_to_dimension_and_rank_one_close_to_one():
    g = torch.Generator().manual_seed(0)
    isotropic = torch.randn(20000, 32, generator=g)
    assert D.effective_rank(isotropic) == pytest.approx(32, abs=0.3)
    rank_one = torch.randn(500, 1, generator=g) @ torch.randn(1, 32, generator=g)
    assert D.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)


def test_effective_rank_of_known_spectrum_equals_exp_entropy():
    # Diagonal matrix with singular values 3, 1: p = (0.75, 0.25) up to RankMe's epsilon.
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    p = np.array([0.75, 0.25]) + D.RANKME_EPS
    assert D.effective_rank(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)


def test_alignment_of_pairs_at_known_angle():
    angles = torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64)[:-1]
    x = torch.stack([angles.cos(), angles.sin()], dim=1)
    theta = 0.3
    y = torch.stack([(angles + theta).cos(), (angles + theta).sin()], dim=1)
    assert D.alignment(x, y) == pytest.approx(2 - 2 * math.cos(theta), rel=1e-9)
    assert D.alignment(x * 5, y * 0.1) == pytest.approx(2 - 2 * math.cos(theta), rel=1e-9)


def test_uniformity_of_square_vertices():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # 4 adjacent pairs at squared distance 2 and 2 diagonal pairs at squared distance 4, t = 2.
    expected = math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6)
    assert D.uniformity(x) == pytest.approx(expected, rel=1e-9)


def test_spread_isotropic_vs_collapsed():
    x = torch.randn(5000, 64, generator=torch.Generator().manual_seed(1))
    assert D.spread(x) == pytest.approx(1 / 8, rel=0.02)
    assert D.spread(torch.ones(100, 64)) == pytest.approx(0.0, abs=1e-9)


def test_collapse_report_keys_and_flag():
    x = torch.randn(64, 8)
    report = D.collapse_report(x, x[:, :4], embeddings_view2=x[:, :4])
    assert {"features/effective_rank", "embeddings/alignment", "embeddings/covariance_rank"} <= set(
        report
    )
    assert report["embeddings/alignment"] == pytest.approx(0.0, abs=1e-12)
    assert D.is_collapsed(1.2, 64, 0.05) and not D.is_collapsed(20.0, 64, 0.05)


def test_spectrum_image_is_rgb_uint8():
    image = D.spectrum_image({"features": torch.rand(10), "embeddings": torch.rand(4)})
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.min() < 128 < image.max()  # lines drawn on a white background
