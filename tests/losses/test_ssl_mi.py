"""SSL-side MI losses: on one process they equal the plain bounds on the full score matrix; 2
processes with half the batch each give the same loss and, under gather_cat's convention (local
gradient = world_size x 1-process gradient, parameters' gradients summed likewise), the same
gradients."""

import torch
from dist_harness import run_distributed

from infossl.losses.flo import flo
from infossl.losses.mi_bounds import ESTIMATORS
from infossl.losses.ssl_mi import FLOSSLLoss, ReMINESSLLoss, flo_ssl_loss, remine_ssl_loss

CASES = [
    ("infonce", {}),
    ("dv", {"reg_weight": 0.5}),
    ("mine", {"reg_weight": 1.0, "ema": torch.tensor(1.3, dtype=torch.float64)}),
    ("nwj", {"reg_weight": 0.1, "reg_target": 1.0}),
    ("tuba", {}),
    ("js", {"reg_weight": 0.1, "reg_target": 1.0}),
    ("smile", {"clip": 1.0, "reg_weight": 0.1}),
]


def _u_head():
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(
        torch.float64
    )


def _run_all(rank: int, world: int, z1: torch.Tensor, z2: torch.Tensor):
    results = []
    for name, kwargs in CASES:
        a = z1.chunk(world)[rank].clone().requires_grad_(True)
        b = z2.chunk(world)[rank].clone().requires_grad_(True)
        out = remine_ssl_loss(a, b, name, temperature=0.5, **kwargs)
        out["loss"].backward()
        results.append((out["loss"].detach(), out["mi_estimate"], a.grad, b.grad))
    a = z1.chunk(world)[rank].clone().requires_grad_(True)
    b = z2.chunk(world)[rank].clone().requires_grad_(True)
    head = _u_head()
    out = flo_ssl_loss(a, b, head, temperature=0.2, reg_weight=0.1)
    out["loss"].backward()
    params = [p.grad.clone() for p in head.parameters()]
    results.append((out["loss"].detach(), out["mi_estimate"], a.grad, b.grad, params))
    return results


def _data():
    torch.manual_seed(0)
    z1 = torch.randn(8, 4, dtype=torch.float64)
    return z1, z1 + 0.5 * torch.randn(8, 4, dtype=torch.float64)


def test_single_process_remine_ssl_loss_equals_bound_on_full_score_matrix():
    z1, z2 = _data()
    for name, kwargs in CASES:
        out = remine_ssl_loss(z1, z2, name, temperature=0.5, **kwargs)
        ref = ESTIMATORS[name](z1 @ z2.T / 0.5, **kwargs)
        torch.testing.assert_close(out["loss"], ref.loss)
        torch.testing.assert_close(out["mi_estimate"], ref.mi)


def test_single_process_flo_ssl_loss_equals_flo_on_cosine_scores():
    z1, z2 = _data()
    head = _u_head()
    h1, h2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    ref = flo(h1 @ h2.T / 0.2, head(torch.cat([h1, h2], 1)))
    out = flo_ssl_loss(z1, z2, head, temperature=0.2)
    torch.testing.assert_close(out["loss"], ref["loss"])


def test_two_processes_match_one_process_for_every_bound_and_flo():
    z1, z2 = _data()
    single = _run_all(0, 1, z1, z2)
    dist = run_distributed(_run_all, 2, (z1, z2))
    for case, ref in enumerate(single):
        for rank in range(2):
            got = dist[rank][case]
            torch.testing.assert_close(got[0], ref[0])  # same global loss on every process
            torch.testing.assert_close(got[1], ref[1])
            torch.testing.assert_close(got[2] / 2, ref[2].chunk(2)[rank])
            torch.testing.assert_close(got[3] / 2, ref[3].chunk(2)[rank])
        if len(ref) == 5:  # u-head parameters: DDP's average of the per-process grads is exact
            for p_ref, p0, p1 in zip(ref[4], dist[0][case][4], dist[1][case][4], strict=True):
                torch.testing.assert_close((p0 + p1) / 2, p_ref)


def test_remine_module_carries_mine_average_like_the_function():
    z1, z2 = _data()
    module = ReMINESSLLoss("mine", reg_weight=1.0, temperature=0.5).double()
    first = remine_ssl_loss(z1, z2, "mine", reg_weight=1.0, temperature=0.5)
    module(z1, z2)
    torch.testing.assert_close(module.ema, first["state"])
    second = remine_ssl_loss(z1, z2, "mine", reg_weight=1.0, temperature=0.5, ema=first["state"])
    out = module(z1, z2)
    torch.testing.assert_close(module.ema, second["state"])
    torch.testing.assert_close(out["loss"], second["loss"])
    assert "ema" in module.state_dict()


def test_flo_module_gives_gradient_to_its_u_head():
    z1, z2 = _data()
    module = FLOSSLLoss(dim=4, hidden_dim=8).double()
    out = module(z1, z2)
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    ref = flo_ssl_loss(z1, z2, module.u_head, temperature=0.1)
    torch.testing.assert_close(out["loss"], ref["loss"])
