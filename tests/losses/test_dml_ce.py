"""The metric-learning cross-entropy of Boudiaf, Rony et al. (official SmoothCrossEntropy) and
the MI lower bound H(Y) - CE."""

import math

import torch
import torch.nn.functional as F

from infossl.losses.dml_ce import label_entropy, mi_lower_bound, smooth_cross_entropy


def _reference(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> float:
    """float64, loops: target 1 - eps on the label and eps / (C - 1) elsewhere; KL summed over
    classes, averaged over the batch."""
    logits = logits.double()
    n, c = logits.shape
    total = 0.0
    for i in range(n):
        log_q = logits[i] - torch.logsumexp(logits[i], 0)
        for k in range(c):
            t = 1 - eps if k == labels[i] else eps / (c - 1)
            if t > 0:
                total += t * (math.log(t) - float(log_q[k]))
    return total / n


def test_smoothed_cross_entropy_matches_float64_reference_with_eps_over_c_minus_1():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(16, 7, generator=g)
    labels = torch.randint(0, 7, (16,), generator=g)
    ours = float(smooth_cross_entropy(logits, labels, eps=0.1))
    assert abs(ours - _reference(logits, labels, 0.1)) < 1e-5
    # PyTorch's label_smoothing spreads eps / C over every class: another loss, not ours.
    torch_target = torch.full((16, 7), 0.1 / 7).scatter_(1, labels.view(-1, 1), 0.9 + 0.1 / 7)
    torch_kl = F.kl_div(F.log_softmax(logits, 1), torch_target, reduction="batchmean")
    assert abs(ours - float(torch_kl)) > 1e-3


def test_smoothed_cross_entropy_by_hand_at_uniform_logits():
    # Zero-initialised classifier: softmax uniform over C = 4. Target [0.9, 0.1/3, 0.1/3, 0.1/3].
    # KL = 0.9 log(0.9 / 0.25) + 3 (0.1/3) log((0.1/3) / 0.25)
    by_hand = 0.9 * math.log(0.9 * 4) + 0.1 * math.log(0.4 / 3)
    loss = smooth_cross_entropy(torch.zeros(3, 4), torch.tensor([0, 2, 3]), eps=0.1)
    assert abs(float(loss) - by_hand) < 1e-6


def test_no_smoothing_is_the_plain_cross_entropy():
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(
        smooth_cross_entropy(logits, labels, 0.0), F.cross_entropy(logits, labels)
    )


def test_mi_lower_bound_is_zero_at_uniform_predictions_and_approaches_h_y():
    labels = torch.arange(5).repeat(4)  # balanced: H(Y) = log 5
    h_y = label_entropy(torch.bincount(labels))
    assert abs(h_y - math.log(5)) < 1e-12
    # Uniform predictions carry no information: H(Y) - log C = 0 exactly.
    assert abs(float(mi_lower_bound(torch.zeros(20, 5), labels, h_y))) < 1e-6
    # Logit 2 on the label, 0 elsewhere: CE = log(e^2 + 4) - 2 for every sample, by hand.
    logits = 2 * F.one_hot(labels, 5).float()
    bound = float(mi_lower_bound(logits, labels, h_y))
    assert abs(bound - (math.log(5) - (math.log(math.exp(2) + 4) - 2))) < 1e-6
    # Unbalanced labels: H(Y) of the empirical distribution, by hand.
    assert (
        abs(
            label_entropy(torch.tensor([3, 1])) - (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
        )
        < 1e-12
    )
