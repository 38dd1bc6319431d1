"""Pairwise metric-learning baselines, taken from pytorch-metric-learning (PML) as they are.

``loss.name`` picks one; its settings live in ``loss.<name>`` (configs/methods/dml-pairwise.yaml):

- ``contrastive``: Hadsell et al. 2006 (PML ``ContrastiveLoss``: positive pairs pulled inside
  pos_margin, negatives pushed beyond neg_margin, on L2 distances).
- ``multi_similarity``: Wang et al. CVPR 2019 (PML ``MultiSimilarityLoss`` with its
  ``MultiSimilarityMiner``, cosine similarity).
- ``triplet``: triplet margin loss with PML's ``TripletMarginMiner`` (semihard/hard/all).
- ``snca``: scalable NCA (Wu et al. ECCV 2018), the form Boudiaf et al. analyse:
  -log sum_{j != i, y_j = y_i} exp(z_i.z_j / sigma) / sum_{k != i} exp(z_i.z_k / sigma) on
  L2-normalised z. PML ``NCALoss`` with cosine similarity and ``softmax_scale = 1 / sigma`` is
  exactly that (it masks the diagonal and drops anchors without a positive).

The paper's pairwise cross-entropy (PCE) is not offered: its exact expression could not be read
from the paper here (see README, "Metric learning"), and the authors did not implement it either
(jeromerony/dml_cross_entropy issue #2: "We did not implement PCE as it requires computation of
eigenvalues").
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, miners

NAMES = ("contrastive", "multi_similarity", "triplet", "snca")


class PairwiseLoss(torch.nn.Module):
    """A pairwise metric-learning loss from pytorch-metric-learning; ``forward(emb, labels)``.

    KevinMusgrave/pytorch-metric-learning (``src/pytorch_metric_learning/losses``):
    ``ContrastiveLoss`` (Hadsell et al. 2006), ``MultiSimilarityLoss`` with its miner (Wang et
    al. 2019), ``TripletMarginLoss`` with ``TripletMarginMiner`` (Schroff et al. 2015) or
    ``NCALoss`` on cosine similarity (scalable NCA, Wu et al. 2018); see the module docstring.

    Args:
        spec: the ``loss`` config: ``name`` (contrastive, multi_similarity, triplet, snca) and a
            mapping of that name's settings (configs/methods/dml-pairwise.yaml).
    """

    def __init__(self, spec: dict):
        super().__init__()
        name = spec["name"]
        if name not in NAMES:
            raise ValueError(
                f"unknown pairwise loss '{name}'; use loss.name= one of {', '.join(NAMES)}"
            )
        s = spec[name]
        self.miner = None
        if name == "contrastive":
            self.loss = losses.ContrastiveLoss(
                pos_margin=s["pos_margin"], neg_margin=s["neg_margin"]
            )
        elif name == "multi_similarity":
            self.loss = losses.MultiSimilarityLoss(alpha=s["alpha"], beta=s["beta"], base=s["base"])
            self.miner = miners.MultiSimilarityMiner(epsilon=s["miner_epsilon"])
        elif name == "triplet":
            self.loss = losses.TripletMarginLoss(margin=s["margin"])
            self.miner = miners.TripletMarginMiner(margin=s["margin"], type_of_triplets=s["mining"])
        else:
            self.loss = losses.NCALoss(
                softmax_scale=1.0 / s["temperature"], distance=distances.CosineSimilarity()
            )
        self.name = name

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = embeddings.float()  # PML's distance matrices in float32 under autocast
        pairs = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, pairs)
