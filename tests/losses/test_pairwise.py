"""The pairwise baselines are pytorch-metric-learning's; SNCA's wiring (cosine, 1 / sigma)
is checked against the formula Boudiaf et al. analyse."""

import math

import pytest
import torch

from infossl.losses.pairwise import NAMES, PairwiseLoss

SPEC = {
    "contrastive": {"pos_margin": 0.0, "neg_margin": 1.0},
    "multi_similarity": {"alpha": 2.0, "beta": 50.0, "base": 0.5, "miner_epsilon": 0.1},
    "triplet": {"margin": 0.2, "mining": "all"},
    "snca": {"temperature": 0.1},
}


def _snca_reference(z: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    """-1/n sum_i log sum_{j != i, y_j = y_i} e^{z_i.z_j / sigma} / sum_{k != i} e^{...},
    float64, L2-normalised z, over the anchors that have a positive."""
    z = torch.nn.functional.normalize(z.double(), dim=1)
    terms = []
    for i in range(len(y)):
        num = sum(
            math.exp(float(z[i] @ z[j]) / sigma) for j in range(len(y)) if j != i and y[j] == y[i]
        )
        den = sum(math.exp(float(z[i] @ z[k]) / sigma) for k in range(len(y)) if k != i)
        if num > 0:
            terms.append(-math.log(num / den))
    return sum(terms) / len(terms)


def test_snca_equals_the_formula_in_float64():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 6, generator=g)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 0, 4])  # class 4 has no positive
    loss = PairwiseLoss({"name": "snca", **SPEC})(z, y)
    assert abs(float(loss) - _snca_reference(z, y, 0.1)) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_every_pairwise_loss_prefers_clustered_embeddings(name):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(8)
    centers = 3 * torch.eye(4, 16)
    clustered = centers[y] + 0.05 * torch.randn(32, 16, generator=g)
    shuffled = clustered[torch.randperm(32, generator=g)]
    loss = PairwiseLoss({"name": name, **SPEC})
    assert float(loss(clustered, y)) < float(loss(shuffled, y))
