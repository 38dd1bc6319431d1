"""Collapse diagnostics against constructions whose answers are known in closed form."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from lightly.utils.debug import std_of_l2_normalized as lightly_std

from infossl.eval import diagnostics as D


def _circle(angles):
    angles = torch.as_tensor(angles, dtype=torch.float64)
    return torch.stack([angles.cos(), angles.sin()], dim=1)


@pytest.mark.parametrize("rank", [1, 3, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_covariance_rank_of_data_with_known_rank(rank, dtype):
    g = torch.Generator().manual_seed(rank)
    a = torch.randn(400, rank, generator=g, dtype=dtype)
    x = a @ torch.randn(rank, 16, generator=g, dtype=dtype) + 5.0
    # The constant offset adds one rank to the raw matrix (numpy, same dtype and tolerance
    # rule) but none to the covariance.
    assert D.covariance_rank(x) == rank
    assert np.linalg.matrix_rank(x.numpy()) == rank + 1


def test_covariance_rank_tolerance_follows_the_input_dtype():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g) @ torch.randn(2, 16, generator=g)
    # Float32 rounding left ~1e-7 relative noise in every direction: rank 2 at float32's eps,
    # "full rank" if the same numbers are judged with float64's eps.
    assert D.covariance_rank(x) == 2
    assert D.covariance_rank(x.double()) == 16


def test_covariance_rank_is_capped_by_the_sample_count_and_reported_beside_it():
    # 20 samples of full-rank 64-d data: the centred 20 x 64 matrix has rank 19, not 64.
    x = torch.randn(20, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = D.metrics(x)
    assert out["covariance_rank"] == 19.0 and out["covariance_rank_max"] == 19.0
    # More samples than dimensions: the dimension is the cap, a rank-5 matrix reads 5 of 64.
    g = torch.Generator().manual_seed(4)
    low = torch.randn(300, 5, generator=g, dtype=torch.float64)
    low = low @ torch.randn(5, 64, generator=g, dtype=torch.float64)
    out = D.metrics(low)
    assert out["covariance_rank"] == 5.0 and out["covariance_rank_max"] == 64.0


def test_covariance_rank_counts_singular_values_above_an_explicit_tolerance():
    # Centred columns with singular values 10, 1, 1e-3 (orthogonal +-1 patterns of 4 rows).
    basis = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    x = basis / 2 * torch.tensor([10.0, 1.0, 1e-3], dtype=torch.float64)
    assert D.covariance_rank(x) == 3
    assert D.covariance_rank(x, tol=1e-2) == 2
    assert D.covariance_rank(x, tol=2.0) == 1


def test_effective_rank_of_known_spectrum_equals_exp_entropy():
    # Singular values 3 and 1: p = (0.75, 0.25) plus RankMe's epsilon (Garrido et al. Eq. 1).
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    p = np.array([0.75, 0.25]) + 1e-7
    assert D.effective_rank(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)


def test_effective_rank_isotropic_close_to_dimension_rank_one_close_to_one():
    g = torch.Generator().manual_seed(0)
    # N = 20000 >> D = 32: singular values within ~sqrt(D/N) = 4% of each other, so the
    # entropy deficit is ~1e-3 nats; tolerance 0.1 of 32.
    isotropic = torch.randn(20000, 32, generator=g)
    assert D.effective_rank(isotropic) == pytest.approx(32, abs=0.1)
    rank_one = torch.randn(500, 1, generator=g) @ torch.randn(1, 32, generator=g)
    assert D.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-4)


def test_effective_rank_uses_the_raw_uncentred_matrix_as_rankme():
    # A large common offset dominates the raw spectrum, so RankMe (raw matrix, as the paper)
    # reads ~1.3 while the centred spectrum would read ~16.
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(2)) + 100.0

    def rankme_numpy(m):
        p = np.linalg.svd(m, compute_uv=False)
        p = p / p.sum() + 1e-7
        return math.exp(-(p * np.log(p)).sum())

    raw = x.double().numpy()
    assert D.effective_rank(x) == pytest.approx(rankme_numpy(raw), rel=1e-9)
    assert D.effective_rank(x) < 1.5
    assert rankme_numpy(raw - raw.mean(axis=0)) > 15.5
    assert D.covariance_rank(x) == 16


def test_alignment_of_pairs_at_known_angle_for_alpha_two_and_one():
    angles = torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64)[:-1]
    theta = 0.3
    x, y = _circle(angles), _circle(angles + theta)
    # ||u - v||^2 = 2 - 2 cos(theta) and ||u - v|| = 2 sin(theta / 2) for unit vectors.
    assert D.alignment(x, y) == pytest.approx(2 - 2 * math.cos(theta), rel=1e-12)
    assert D.alignment(x, y, alpha=1) == pytest.approx(2 * math.sin(theta / 2), rel=1e-12)
    # Inputs are l2-normalised first, so scaling either view changes nothing.
    assert D.alignment(x * 5, y * 0.1) == pytest.approx(2 - 2 * math.cos(theta), rel=1e-12)


def test_uniformity_of_evenly_spaced_circle_points_equals_closed_form():
    n, t = 12, 2.0
    x = _circle(2 * math.pi * torch.arange(n) / n) * 3.0
    # Each point sees the others at angles 2 pi k / n, k = 1..n-1; every pair counted once.
    mean = sum(math.exp(-t * (2 - 2 * math.cos(2 * math.pi * k / n))) for k in range(1, n)) / (
        n - 1
    )
    assert D.uniformity(x, t=t) == pytest.approx(math.log(mean), rel=1e-12)
    # All rows equal: every pairwise distance is 0, the maximum log(1) = 0.
    assert D.uniformity(torch.ones(10, 3)) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_subsamples_large_inputs_without_biasing_the_mean():
    x = torch.randn(3000, 8, generator=torch.Generator().manual_seed(3))
    exact = D.uniformity(x, max_samples=None)
    assert D.uniformity(x, max_samples=3000) == exact
    assert D.uniformity(x, max_samples=1000) == pytest.approx(exact, abs=0.01)
    assert D.uniformity(x, max_samples=1000) == D.uniformity(x, max_samples=1000)


def test_std_of_l2_normalized_isotropic_is_one_over_sqrt_d_and_constant_is_zero():
    x = torch.randn(5000, 64, generator=torch.Generator().manual_seed(1))
    assert D.std_of_l2_normalized(x) == pytest.approx(1 / 8, rel=0.01)
    assert D.std_of_l2_normalized(x) == pytest.approx(float(lightly_std(x.double())), rel=1e-12)
    assert D.std_of_l2_normalized(torch.ones(100, 64) * 7) == pytest.approx(0.0, abs=1e-12)


def test_collapse_report_has_every_metric_for_features_and_embeddings():
    g = torch.Generator().manual_seed(4)
    f, z = torch.randn(64, 8, generator=g), torch.randn(64, 4, generator=g)
    report = D.collapse_report(f, z, embeddings_view2=z, features_view2=f.flip(0))
    metrics = ["covariance_rank", "covariance_rank_max", "effective_rank", "std_l2_normalized"]
    metrics += ["uniformity", "alignment"]
    assert set(report) == {f"{part}/{m}" for part in ("features", "embeddings") for m in metrics}
    assert report["embeddings/alignment"] == pytest.approx(0.0, abs=1e-12)  # identical views
    assert report["features/covariance_rank"] == 8.0
    assert report["embeddings/effective_rank"] == pytest.approx(D.effective_rank(z))
    assert "features/alignment" not in D.collapse_report(f, z)


def test_non_finite_input_reports_nan_instead_of_raising():
    x = torch.randn(32, 4)
    x[3, 1] = math.nan
    report = D.collapse_report(x, x)
    assert all(math.isnan(v) for k, v in report.items() if not k.endswith("_max"))
    assert report["features/covariance_rank_max"] == 4.0  # the cap needs only the shape
    assert torch.isnan(D.singular_values(x)).all() and D.singular_values(x).shape == (4,)
    assert not D.is_collapsed(report["embeddings/effective_rank"], 4, 0.5)


def test_is_collapsed_compares_effective_rank_with_fraction_of_dimension():
    assert D.is_collapsed(1.2, 64, 0.05)  # 1.2 < 3.2
    assert not D.is_collapsed(3.3, 64, 0.05)
    assert D.effective_rank(torch.zeros(10, 4)) == 0.0


def test_spectrum_image_is_rgb_uint8_with_lines_and_leaves_backend_alone():
    backend = matplotlib.get_backend()
    spectra = {"features": torch.logspace(0, -3, 10), "embeddings": torch.tensor([2.0, 1.0, 0.0])}
    image = D.spectrum_image(spectra)
    assert image.dtype == np.uint8 and image.shape == (256, 400, 3)
    assert (image == 255).all(axis=2).mean() > 0.5  # mostly white background
    colored = (image.max(axis=2).astype(int) - image.min(axis=2)) > 100
    assert colored.sum() > 100  # the two coloured lines (matplotlib C0 blue, C1 orange)
    assert matplotlib.get_backend() == backend
