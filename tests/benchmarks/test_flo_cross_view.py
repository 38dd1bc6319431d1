"""FLO's cross-view experiment: the halves split as the official notebook, the CCA baseline
recovers known canonical correlations, and a short run writes consistent files."""

import json

import numpy as np
import pytest

from benchmarks import flo_cross_view as bench


def test_split_halves_takes_the_left_and_right_columns_row_major():
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    left, right = bench.split_halves(images)
    assert left[0].tolist() == [0, 1, 4, 5, 8, 9]
    assert right[1].tolist() == [14, 15, 18, 19, 22, 23]


def test_cca_recovers_known_canonical_correlations_and_their_gaussian_mi():
    # x_k = s_k + e_k, y_k = s_k + f_k with var(e) = var(f) = v_k: corr = 1 / (1 + v_k); random
    # invertible mixings leave the canonical correlations unchanged.
    rng = np.random.default_rng(0)
    n, rho = 4000, np.array([0.9, 0.6, 0.3])
    v = 1 / rho - 1
    s = rng.standard_normal((n, 3))
    x = (s + rng.standard_normal((n, 3)) * np.sqrt(v)) @ rng.standard_normal((3, 3))
    y = (s + rng.standard_normal((n, 3)) * np.sqrt(v)) @ rng.standard_normal((3, 3))
    z_train, z_test, got = bench.cca_features(x, y, x[:10], y[:10], 3, seed=0)
    assert got == pytest.approx(rho, abs=0.04)
    assert z_train.shape == (n, 6) and z_test.shape == (10, 6)
    assert bench.gaussian_mi(got) == pytest.approx(-0.5 * np.log(1 - rho**2).sum(), abs=0.1)


def test_short_run_writes_the_table_from_the_json(tmp_path):
    out = tmp_path / "cv"
    args = [
        "--estimators",
        "cca",
        "flo",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--label-epochs",
        "3",
        "--out",
        str(out),
    ]
    assert bench.main(args) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["estimator"] for r in runs] == ["cca", "flo"]
    cca, flo = runs
    assert cca["test_accuracy"] > 50 and cca["mi_estimate"] > 0.5  # digits halves share a lot
    assert np.isfinite(flo["mi_estimate"]) and flo["test_accuracy"] > 10
    table = (out / "table.md").read_text()
    assert f"| cca | {cca['test_accuracy']:.2f} ± 0.00 |" in table
    assert (out / "cross_view.png").stat().st_size > 0
