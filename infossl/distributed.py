"""The one place where tensors cross processes.

Losses that need the global batch call :func:`gather_cat`. It uses lightly's ``GatherLayer``
(all_gather forward; backward all-reduces the stacked gradients and returns this process's
slice), the form solo-learn, lightly (since PR #1531), VISSL and VICReg share. A plain
``dist.all_reduce`` on the loss path has no backward and silently scales gradients by
1/world_size (lightly#1977); never use one there.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightly.utils import dist as lightly_dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0, with gradients flowing back.

    The result is ordered by rank, so process r's rows start at ``r * x.shape[0]``.
    With one process it returns ``x`` itself.
    """
    if world_size() == 1:
        return x
    return torch.cat(lightly_dist.gather(x), dim=0)


def gather_cat_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_cat` for tensors that carry no gradient (labels, indices)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
