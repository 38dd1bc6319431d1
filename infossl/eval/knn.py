"""Weighted kNN top-1 on frozen features (cosine similarity, weights exp(sim / T)), the
monitor solo-learn (WeightedKNNClassifier) and lightly (knn_predict) report. lightly's
``knn_predict`` does the voting; we only normalise, chunk the queries and count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict


@torch.no_grad()
def knn_top1(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> float:
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    bank = F.normalize(train_features.float(), dim=1).T.contiguous()
    labels = train_labels.long()
    k = min(k, bank.shape[1])
    correct = 0
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start : start + chunk_size].float(), dim=1)
        predicted = knn_predict(query, bank, labels, num_classes, knn_k=k, knn_t=temperature)
        correct += int((predicted[:, 0] == test_labels[start : start + chunk_size]).sum())
    return correct / test_features.shape[0]
