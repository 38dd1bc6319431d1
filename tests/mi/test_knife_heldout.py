"""KNIFE under the held-out protocol (``infossl/mi/knife.py``): the anchored conditional starts at
p(y | x) = p(y), every entropy term is selected at its own held-out maximum, and on the 5 x 5
Gaussian where one shared selection step gave -0.86 nats for I = 0.593 the estimate recovers it."""

import math

import numpy as np
import pytest
import torch

from infossl.mi import MIInputError, estimate
from infossl.mi.knife import KnifeModel


def gaussian(n, dim, mi, seed=0):
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    return x, rho * x + math.sqrt(1.0 - rho**2) * rng.standard_normal((n, dim))


@pytest.mark.parametrize("conditional_weights", [True, False])
def test_anchored_conditional_starts_equal_to_the_marginal(conditional_weights):
    torch.manual_seed(0)
    x, y = (torch.as_tensor(a, dtype=torch.float32) for a in gaussian(256, 3, 1.0))
    model = KnifeModel(3, 3, hidden_dim=16, modes=8, conditional_weights=conditional_weights)
    assert model.conditional.net[-1].out_features == 8 * 3 + (8 if conditional_weights else 0)
    _, mi = model(x, y)
    assert mi.item() == 0.0
    terms = model._terms(x, y)
    torch.testing.assert_close(terms["y|x"], terms["y"], rtol=0, atol=0)
    loss, _ = model(x, y)
    loss.backward()  # the zero output layer still gets a gradient: the estimate can leave 0
    assert model.conditional.net[-1].weight.grad.abs().sum() > 0


def test_each_term_is_kept_from_its_own_best_heldout_evaluation(monkeypatch):
    model = KnifeModel(1, 1, hidden_dim=4, modes=2)
    x = y = torch.zeros(2, 1)
    evaluations = iter(
        [
            {"y": torch.tensor([-2.0, -2.0]), "y|x": torch.tensor([-1.0, -0.5])},
            {"y": torch.tensor([-1.5, -1.5]), "y|x": torch.tensor([-3.0, -3.0])},
            {"y": torch.tensor([-1.8, -1.8]), "y|x": torch.tensor([float("nan"), 0.0])},
        ]
    )
    monkeypatch.setattr(model, "_terms", lambda x, y: next(evaluations))
    first = model.heldout(x, y)
    assert first.estimate == pytest.approx(-0.75 + 2.0) and first.monitor == pytest.approx(-2.75)
    second = model.heldout(x, y)  # a better marginal, a worse conditional
    assert second.estimate == pytest.approx(-0.75 + 1.5) and second.monitor == pytest.approx(-2.25)
    third = model.heldout(x, y)  # a non-finite term never becomes the best
    assert third.estimate == pytest.approx(-0.75 + 1.5) and third.monitor == pytest.approx(-2.25)
    assert third.value(torch.tensor([1, 1])) == pytest.approx(-0.5 + 1.5)


def test_knife_recovers_the_gaussian_that_overfit_under_one_selection_step():
    x, y = gaussian(5000, 5, 0.593)
    res = estimate(x, y, "knife", hidden_dim=64, max_steps=1500, eval_every=100, patience=4, seed=0)
    assert 0.005 < res.stderr < 0.05
    assert abs(res.estimate - 0.593) < 3 * res.stderr, (res.estimate, res.stderr)
    assert res.estimate == res.curve["heldout"][res.curve["step"].index(res.best_step)]


def test_unknown_conditional_is_an_input_error():
    x, y = gaussian(300, 2, 0.5)
    with pytest.raises(MIInputError, match="conditional must be one of"):
        estimate(x, y, "knife", batch_size=64, max_steps=1, conditional="learned")
