"""Weighted kNN top-1 accuracy on frozen features.

The monitor solo-learn (``WeightedKNNClassifier``, ``distance_fx="cosine"``) and lightly
(``knn_predict``) report: cosine similarity, the k most similar training samples vote for their
class with weight ``exp(similarity / temperature)`` (Wu et al., CVPR 2018, arXiv:1805.01978,
"weighted k-NN"); the class with the largest summed weight is the prediction.

lightly's ``knn_predict`` does exactly this vote (its source: ``topk`` of ``feature @ bank``,
``(sim / knn_t).exp()``, one-hot scatter, sum over neighbours), so we call it. It holds a
B x N similarity matrix and a B x k x C one-hot tensor per call; we choose the number of
queries B per call so that both stay under ``max_elements`` (default 2^25 floats = 128 MiB).
Similarities are computed in float32 with autocast disabled: bf16 similarities would reorder
neighbours. Ties between classes are broken by ``argsort`` order (unspecified).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict

MAX_ELEMENTS = 2**25


def queries_per_chunk(num_train: int, k: int, num_classes: int, max_elements: int) -> int:
    """Largest query batch whose similarity matrix and one-hot votes fit in ``max_elements``."""
    return max(1, max_elements // max(num_train, k * num_classes))


@torch.no_grad()
def knn_predictions(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> torch.Tensor:
    """Predicted class (weighted cosine kNN) of every test row, on the train features' device.
    ``k`` is capped at the number of training samples."""
    device = train_features.device
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    k = min(k, train_features.shape[0])
    chunk = queries_per_chunk(train_features.shape[0], k, num_classes, max_elements)
    with torch.autocast(device_type=device.type, enabled=False):
        bank = F.normalize(train_features.float(), dim=1).T.contiguous()
        labels = train_labels.to(device).long()
        predictions = []
        for start in range(0, test_features.shape[0], chunk):
            query = test_features[start : start + chunk].to(device).float()
            ranked = knn_predict(
                F.normalize(query, dim=1), bank, labels, num_classes, knn_k=k, knn_t=temperature
            )
            predictions.append(ranked[:, 0])
    if not predictions:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(predictions)


def knn_top1(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> float:
    """Top-1 accuracy of weighted kNN on cosine similarity, weights exp(sim / temperature).

    Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR
    2018, as solo-learn (vturrisi/solo-learn, ``solo/utils/knn.py``) and lightly
    (``lightly/utils/benchmarking/knn.py``) compute it.

    Args:
        train_features: (N, D) features of the labelled training images.
        train_labels: (N,) their labels.
        test_features: (M, D) features to classify.
        test_labels: (M,) their labels.
        k: neighbours (capped at N).
        temperature: weight temperature (0.07).
        num_classes: default 1 + the largest label seen in either set.
        max_elements: similarity entries computed at once (memory bound).

    Returns:
        Fraction of test rows whose predicted class equals their label, in [0, 1].
    """
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    predicted = knn_predictions(
        train_features, train_labels, test_features, k, temperature, num_classes, max_elements
    )
    return float((predicted.cpu() == test_labels.cpu().long()).double().mean())
