"""Cross-entropy for metric learning and the MI bound it tightens (Boudiaf et al., ECCV 2020).

The official code (jeromerony/dml_cross_entropy, ``utils/utils.py: SmoothCrossEntropy``) smooths
the labels as target 1 - eps and every other class eps / (C - 1) -- not PyTorch's
``label_smoothing``, which gives every class eps / C (so the target gets 1 - eps + eps / C) -- and
computes KL(target || softmax(logits)) summed over classes, averaged over the batch. KL and the
smoothed cross-entropy differ by the entropy of the (constant) target, so the gradients are the
same; we return the KL, as the official code does, which makes the logged value 0 at the optimum.

The MI view (the paper's Sec. 4): I(Z; Y) = H(Y) - H(Y | Z) and the plain (unsmoothed)
cross-entropy E[-log q(y | z)] upper-bounds H(Y | Z) for any classifier q, so
H(Y) - CE is a lower bound on I(Z; Y) (Barber & Agakov). ``mi_lower_bound`` is that number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def smoothed_targets(labels: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """One row per label: 1 - eps on the label, eps / (C - 1) on every other class."""
    if num_classes < 2:
        raise ValueError("label smoothing needs at least 2 classes")
    off = eps / (num_classes - 1)
    target = torch.full(
        (labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device
    )
    return target.scatter_(1, labels.view(-1, 1), 1.0 - eps)


def smooth_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.1):
    """Smoothed cross-entropy of metric learning: KL(smoothed target || softmax(logits)).

    Boudiaf, Rony et al., "A Unifying Mutual Information View of Metric Learning: Cross-Entropy
    vs. Pairwise Losses", ECCV 2020; official ``SmoothCrossEntropy`` (jeromerony/
    dml_cross_entropy, ``utils/utils.py``): target 1 - eps, every other class eps / (C - 1).
    Computed in float32 even under autocast (log-softmax of large logits).

    Args:
        logits: (N, C) classifier outputs.
        labels: (N,) class indices.
        eps: smoothing; 0 is the plain cross-entropy.

    Returns:
        Scalar: the KL summed over classes, mean over the batch (0 at the optimum).
    """
    logits = logits.float()
    log_probs = F.log_softmax(logits, dim=1)
    if eps == 0:
        return F.nll_loss(log_probs, labels)
    target = smoothed_targets(labels, logits.shape[1], eps)
    # xlogy gives 0 * log 0 = 0 for classes with zero target mass.
    kl = torch.xlogy(target, target) - target * log_probs
    return kl.sum(dim=1).mean()


def label_entropy(counts: torch.Tensor) -> float:
    """H(Y) in nats of the label distribution given by per-class counts."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def mi_lower_bound(logits: torch.Tensor, labels: torch.Tensor, h_y: float) -> torch.Tensor:
    """H(Y) - CE(logits, labels): the lower bound on I(Z; Y) the cross-entropy maximises.

    Boudiaf, Rony et al., ECCV 2020, Sec. 4 (CE upper-bounds H(Y | Z) for any classifier).

    Args:
        logits: (N, C) classifier outputs.
        labels: (N,) class indices.
        h_y: H(Y) in nats (``label_entropy`` of the training counts, or log C).

    Returns:
        Scalar tensor: the bound in nats.
    """
    return h_y - F.cross_entropy(logits.float(), labels)


def uniform_label_entropy(num_classes: int) -> float:
    return math.log(num_classes)
