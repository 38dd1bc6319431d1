"""FLO: value and gradient against a float64 loop reference of the official multi-negative form,
tightness at the analytic optimum (g = log ratio, u = -PMI), shift invariance in g, the gauge-only
regularizer, and u learning the negative PMI of a 2-D Gaussian (FLO paper Fig. 2)."""

import math

import torch

from benchmarks._gaussian import log_density_ratio, mi_to_rho, sample_correlated_gaussian
from infossl.losses.critics import FLOSharedCritic
from infossl.losses.flo import flo


def reference_flo(g, u):
    """``20Dmulti`` script form: l_i = u_i + 1/(K-1) sum_{j != i} exp(-u_i + g_ij - g_ii) - 1."""
    k = g.shape[0]
    total = g.new_zeros(())
    for i in range(k):
        neg = sum(torch.exp(-u[i] + g[i, j] - g[i, i]) for j in range(k) if j != i)
        total = total + u[i] + neg / (k - 1) - 1
    return total / k


def test_value_and_gradients_match_float64_reference():
    torch.manual_seed(0)
    g = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    u = torch.randn(6, dtype=torch.float64, requires_grad=True)
    out = flo(g, u)
    ref = reference_flo(g, u)
    torch.testing.assert_close(out["loss"], ref)
    torch.testing.assert_close(out["mi"], -ref.detach())
    for a, b in zip(
        torch.autograd.grad(out["loss"], (g, u)), torch.autograd.grad(ref, (g, u)), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_u_shaped_k_by_1_as_official_head_is_accepted():
    torch.manual_seed(1)
    g, u = torch.randn(5, 5), torch.randn(5)
    torch.testing.assert_close(flo(g, u[:, None])["loss"], flo(g, u)["loss"])


def test_analytic_optimum_is_tight_at_small_mi():
    # g* = log ratio, u* = -PMI of the positive pair: FLO = I exactly in expectation (Prop. 2.2).
    torch.manual_seed(2)
    dim, mi, k = 20, 1.0, 256
    rho = mi_to_rho(dim, mi)
    vals = []
    for _ in range(8):
        x, y = sample_correlated_gaussian(k, dim, rho, dtype=torch.float64)
        g = log_density_ratio(x, y, rho)
        vals.append(float(flo(g, -g.diagonal())["mi"]))
    assert abs(sum(vals) / len(vals) - mi) < 0.1  # > 3 standard errors of this estimate


def test_value_is_invariant_to_row_shifts_of_g():
    torch.manual_seed(3)
    g, u = torch.randn(6, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    shifted = g + 10 * torch.randn(6, 1, dtype=torch.float64)
    torch.testing.assert_close(flo(shifted, u)["mi"], flo(g, u)["mi"])


def test_regularizer_only_adds_gauge_gradient_on_g():
    torch.manual_seed(4)
    g = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    u = torch.randn(6, dtype=torch.float64, requires_grad=True)
    plain, reg = flo(g, u), flo(g, u, reg_weight=0.5, reg_target=0.2)
    torch.testing.assert_close(reg["mi"], plain["mi"])
    off = ~torch.eye(6, dtype=torch.bool)
    lme = torch.log(torch.exp(g[off]).mean())
    gp_g, gp_u = torch.autograd.grad(plain["loss"], (g, u))
    gr_g, gr_u = torch.autograd.grad(reg["loss"], (g, u))
    torch.testing.assert_close(gr_u, gp_u)
    torch.testing.assert_close(gr_g, gp_g + torch.autograd.grad(0.5 * (lme - 0.2) ** 2, g)[0])


def test_u_learns_negative_pointwise_mi_on_2d_gaussian():
    # FLO paper Fig. 2: x, y scalar, rho = 0.5; -u(x, y) tracks log p(x,y)/(p(x)p(y)).
    torch.manual_seed(5)
    torch.set_num_threads(1)
    rho = 0.5
    critic = FLOSharedCritic(1, 1, hidden_dim=64, layers=2)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for _ in range(600):
        x, y = sample_correlated_gaussian(64, 1, rho)
        g, u = critic(x, y)
        loss = flo(g, u)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = sample_correlated_gaussian(2000, 1, rho)
    with torch.no_grad():
        neg_u = -critic.u(x, y)
    s2 = 1 - rho**2
    pmi = (-((y - rho * x) ** 2) / (2 * s2) - 0.5 * math.log(s2) + y**2 / 2).squeeze(1)
    corr = torch.corrcoef(torch.stack([neg_u, pmi]))[0, 1]
    assert corr > 0.9, float(corr)


def official_bilinear_flo(x, y, tau, u_func):
    """qingguo666/FLO, Jupyter-Notebook/FLO-BiLinear-code-snippet.ipynb: BilinearCritic.forward
    (hx / sqrt(tau), hy / sqrt(tau), u_func(hx, hy) on the unit-norm features) followed by
    BilinearFLO.PMI's one-function mode, then .mean() (the loss)."""
    hx = torch.nn.functional.normalize(x, dim=1)
    hy = torch.nn.functional.normalize(y, dim=1)
    u = u_func(torch.cat([hx, hy], dim=1))
    sq = torch.sqrt(tau)
    similarity = (hx / sq) @ (hy / sq).t()
    pos_mask = torch.eye(hx.size(0), dtype=torch.bool)
    g = similarity[pos_mask].view(hx.size(0), -1)
    g0 = similarity[~pos_mask].view(hx.size(0), -1)
    g0_logsumexp = torch.logsumexp(g0, 1).view(-1, 1)
    return (u + torch.exp(-u + g0_logsumexp - g) / (hx.size(0) - 1) - 1).mean()


def test_learned_temperature_and_128_unit_u_match_the_official_bilinear_flo():
    from infossl.losses.ssl_mi import FLOSSLLoss

    torch.manual_seed(6)
    module = FLOSSLLoss(dim=5, hidden_dim=128, temperature=1.0, learn_temperature=True).double()
    assert module.u_head[0].out_features == 128 and module.tau.item() == 1.0
    with torch.no_grad():
        module.tau.fill_(0.7)  # away from 1, so that a wrong power of tau shows
    x = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    y = (x + 0.3 * torch.randn(9, 5, dtype=torch.float64)).detach().requires_grad_(True)
    out = module(x, y)
    ref = official_bilinear_flo(x, y, module.tau, module.u_head)
    torch.testing.assert_close(out["loss"], ref)
    torch.testing.assert_close(out["temperature"], module.tau.detach())
    wrt = (x, y, module.tau, *module.u_head.parameters())
    grads_ref = torch.autograd.grad(ref, wrt)
    for a, b in zip(torch.autograd.grad(out["loss"], wrt), grads_ref, strict=True):
        torch.testing.assert_close(a, b)
    assert abs(float(grads_ref[2])) > 1e-3  # tau really learns


def test_fixed_temperature_is_not_a_parameter():
    from infossl.losses.ssl_mi import FLOSSLLoss

    module = FLOSSLLoss(dim=4, hidden_dim=8, temperature=0.1)
    assert module.tau is None
    assert "tau" not in dict(module.named_parameters())
