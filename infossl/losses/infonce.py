"""InfoNCE / NT-Xent (SimCLR, Chen et al. 2020, Eq. 1) with negatives from every process.

For 2N embeddings (N pairs) gathered over all processes, the loss of anchor i with positive p(i) is
    l_i = -log( exp(s_{i,p(i)} / t) / sum_{k != i} exp(s_{i,k} / t) ),   s = cosine similarity,
averaged over the anchors of this process. Each process scores only its own anchors against the
global batch (as lightly's NTXentLoss with gather_distributed=True): the per-process loss is the
mean over local anchors, and DDP's gradient averaging turns it into the global mean.

lightly's NTXentLoss computes the same value; we keep our own function because the MI view
needs the per-anchor terms (the log-partition and the positive score) and lightly returns only
the mean. ``tests/losses/test_infonce.py`` checks both against a float64 reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from infossl.distributed import gather_cat, rank


def nt_xent_terms(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float
) -> dict[str, torch.Tensor]:
    """NT-Xent (SimCLR, Chen et al. 2020, Eq. 1) of local views against the global batch.

    Each process scores its own 2N anchors against all 2 * N_global views (gathered with
    gradients), as lightly's ``NTXentLoss(gather_distributed=True)`` (lightly-ai/lightly,
    ``lightly/loss/ntx_ent_loss.py``) does.

    Args:
        z1: (N, D) embeddings of view 1 on this process.
        z2: (N, D) embeddings of view 2, row i the positive of ``z1[i]``.
        temperature: t in exp(cos / t).

    Returns:
        dict of ``loss`` (mean over the 2N local anchors, with gradient), ``positive`` (mean
        positive logit s/t), ``log_partition`` (mean log-sum-exp over the 2*N_global - 1
        candidates) and ``mi_estimate`` = log(2*N_global - 1) - loss, the InfoNCE lower bound on
        I(z1; z2) (van den Oord et al. 2018), which can never exceed log(2*N_global - 1).
    """
    n = z1.shape[0]
    # Cosine similarities are formed in float32 even under autocast: exp(s/t) with t = 0.1 in
    # bf16 loses the small differences between negatives that carry the gradient.
    with torch.autocast(device_type=z1.device.type, enabled=False):
        dtype = torch.promote_types(z1.dtype, torch.float32)
        local = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
        everyone = F.normalize(torch.cat([gather_cat(z1), gather_cat(z2)]).to(dtype), dim=1)
        total = everyone.shape[0] // 2  # N_global
        logits = local @ everyone.T / temperature  # (2n, 2*total)

        offset = rank() * n
        local_idx = torch.arange(n, device=z1.device) + offset
        # Row i < n is view-1 sample offset+i; its positive is view-2 of the same sample.
        self_cols = torch.cat([local_idx, local_idx + total])
        positive_cols = torch.cat([local_idx + total, local_idx])
        # An anchor is never its own negative. The mask is an index comparison, not F.one_hot,
        # which checks its input's range with a host sync.
        cols = torch.arange(2 * total, device=z1.device)
        logits = logits.masked_fill(cols[None, :] == self_cols[:, None], float("-inf"))
        log_partition = torch.logsumexp(logits, dim=1)
        positive = logits.gather(1, positive_cols[:, None]).squeeze(1)
        loss = (log_partition - positive).mean()
    return {
        "loss": loss,
        "positive": positive.mean().detach(),
        "log_partition": log_partition.mean().detach(),
        "mi_estimate": (math.log(2 * total - 1) - loss).detach(),
    }


class InfoNCELoss(torch.nn.Module):
    """NT-Xent as a module: ``forward(z1, z2)`` is :func:`nt_xent_terms` at its temperature.

    SimCLR (Chen et al. 2020); google-research/simclr ``objective.py``.

    Args:
        temperature: softmax temperature (SimCLR on CIFAR: 0.2 in solo-learn, 0.5 in lightly).
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        return nt_xent_terms(z1, z2, self.temperature)
