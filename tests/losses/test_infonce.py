"""NT-Xent: value and gradient against a float64 loop reference written from SimCLR's Eq. 1,
agreement with lightly's NTXentLoss, the log K cap, and 2 processes vs 1."""

import math

import torch
from dist_harness import run_distributed
from lightly.loss import NTXentLoss

from infossl.losses.infonce import nt_xent_terms


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    n = n2 // 2
    total = z.new_zeros(())
    for i in range(n2):
        positive = (i + n) % n2
        denominator = sum(torch.exp(z[i] @ z[k] / t) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(z[i] @ z[positive] / t) / denominator)
    return total / n2


def test_value_and_gradient_match_float64_reference():
    torch.manual_seed(0)
    z1 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    ours = nt_xent_terms(z1, z2, temperature=0.3)["loss"]
    g1, g2 = torch.autograd.grad(ours, (z1, z2))
    reference = reference_nt_xent(z1, z2, 0.3)
    r1, r2 = torch.autograd.grad(reference, (z1, z2))
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(g1, r1)
    torch.testing.assert_close(g2, r2)


def test_matches_lightly_ntxent():
    torch.manual_seed(1)
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    lightly_loss = NTXentLoss(temperature=0.5)(z1, z2)
    torch.testing.assert_close(nt_xent_terms(z1, z2, 0.5)["loss"], lightly_loss)


def test_mi_estimate_never_exceeds_log_of_candidates():
    torch.manual_seed(2)
    z = torch.randn(8, 4)
    # Identical views at a tiny temperature: the best case for the bound.
    terms = nt_xent_terms(z, z.clone(), temperature=0.01)
    bound = math.log(2 * 8 - 1)
    assert terms["mi_estimate"] <= bound + 1e-6
    assert terms["mi_estimate"] > bound - 0.05


def _two_process_loss(rank: int, world: int, z1: torch.Tensor, z2: torch.Tensor):
    local1 = z1.chunk(world)[rank].clone().requires_grad_(True)
    local2 = z2.chunk(world)[rank].clone().requires_grad_(True)
    loss = nt_xent_terms(local1, local2, temperature=0.2)["loss"]
    loss.backward()
    return loss.detach(), local1.grad, local2.grad


def test_two_processes_match_one_process():
    torch.manual_seed(3)
    z1 = torch.randn(8, 6, dtype=torch.float64)
    z2 = torch.randn(8, 6, dtype=torch.float64)
    full1, full2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = nt_xent_terms(full1, full2, temperature=0.2)["loss"]
    loss.backward()

    results = run_distributed(_two_process_loss, 2, (z1, z2))
    # Each process's loss is the mean over its own anchors; their average is the global loss.
    torch.testing.assert_close(sum(r[0] for r in results) / 2, loss.detach())
    for rank, (_, g1, g2) in enumerate(results):
        # Per-process gradients of local rows equal the 1-process gradient of the global mean
        # loss: the local mean has weight 2 (=world) on these rows, and gather's backward sums
        # the other process's contribution; DDP's averaging over the 2 processes divides by 2.
        torch.testing.assert_close(g1 / 2, full1.grad.chunk(2)[rank])
        torch.testing.assert_close(g2 / 2, full2.grad.chunk(2)[rank])
