"""gather_cat: forward concatenates by rank; backward sums the gradient every process computes
for the same global loss, so each local row gets world_size x the 1-process gradient. DDP then
averages parameter gradients over processes, which gives exactly the 1-process gradient (the
convention of lightly's GatherLayer and solo-learn's; a plain all_reduce would instead lose it,
lightly#1977)."""

import torch
from dist_harness import run_distributed

from infossl.distributed import gather_cat


def _gather_and_backprop(rank: int, world: int, full: torch.Tensor, weights: torch.Tensor):
    local = full.chunk(world)[rank].clone().requires_grad_(True)
    gathered = gather_cat(local)
    # Every process computes the same global scalar, as a loss on the gathered batch does.
    loss = (gathered * weights).sum() ** 2
    loss.backward()
    return gathered.detach(), local.grad


def test_gather_cat_matches_single_process_value_and_gradient():
    torch.manual_seed(0)
    full = torch.randn(6, 3, dtype=torch.float64)
    weights = torch.randn(6, 3, dtype=torch.float64)

    reference = full.clone().requires_grad_(True)
    ((reference * weights).sum() ** 2).backward()

    results = run_distributed(_gather_and_backprop, 2, (full, weights))
    for rank, (gathered, grad) in enumerate(results):
        torch.testing.assert_close(gathered, full)
        torch.testing.assert_close(grad / len(results), reference.grad.chunk(2)[rank])
