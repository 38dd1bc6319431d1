"""Recall@K for retrieval on held-out classes, as the DML benchmarks report it.

Every test image is a query against all the other test images (leave-one-out, query set =
gallery); Recall@K is the fraction of queries with at least one same-class image among their K
nearest neighbours (Song et al. 2016, and ``utils/metrics.py`` of jeromerony/dml_cross_entropy).
The neighbour search is pytorch-metric-learning's ``CustomKNN`` (exact, batched); it removes each
query's own index from its neighbours.

Distances, as the official code reports both: ``cosine`` (L2-normalised, inner product) and
``l2`` (Euclidean on the raw embeddings).
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.inference import CustomKNN

DISTANCES = ("cosine", "l2")


def nearest_neighbours(
    embeddings: torch.Tensor, k: int, distance: str, batch_size: int = 1024
) -> torch.Tensor:
    """Indices (N x k) of each row's k nearest other rows, nearest first."""
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance '{distance}'; use one of {DISTANCES}")
    # PML's distances L2-normalise by default; the L2 search must see the raw embeddings.
    metric = (
        CosineSimilarity()
        if distance == "cosine"
        else LpDistance(p=2, power=1, normalize_embeddings=False)
    )
    knn = CustomKNN(metric, batch_size=batch_size)
    x = embeddings.float()
    _, indices = knn(x, k, x, ref_includes_query=True)
    return indices


def recall_at_k(
    embeddings: torch.Tensor, labels: torch.Tensor, ks=(1, 2, 4, 8), distance: str = "cosine"
) -> dict[int, float]:
    """Recall@K of image retrieval: every embedding a query against all the others.

    The metric-learning protocol of Boudiaf, Rony et al., ECCV 2020 (jeromerony/
    dml_cross_entropy, ``utils/metrics.py``): a query counts as a hit at K when one of its K
    nearest other embeddings has its label.

    Args:
        embeddings: (N, D) test embeddings.
        labels: (N,) their labels.
        ks: the K values.
        distance: "cosine" or "l2".

    Returns:
        dict {K: Recall@K in [0, 1]}.
    """
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"Recall@K needs K >= 1, got {ks}")
    if ks[-1] >= len(labels):
        raise ValueError(f"Recall@{ks[-1]} needs more than {ks[-1]} test images, got {len(labels)}")
    neighbours = nearest_neighbours(embeddings, ks[-1], distance)
    hits = labels[neighbours] == labels.view(-1, 1)
    return {k: float(hits[:, :k].any(dim=1).double().mean()) for k in ks}
