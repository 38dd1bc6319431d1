"""KNIFE estimators: the mixture log-density against torch.distributions (float64), entropy of
Gaussians against (d/2) log(2 pi e sigma^2), and MI of correlated Gaussians against
-(d/2) log(1 - rho^2), for the conditional and the joint variant."""

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from infossl.losses.knife import (
    KNIFE,
    ConditionalKNIFE,
    JointKNIFE,
    MarginalKNIFE,
    knife_log_density,
)


@pytest.fixture(autouse=True)
def one_thread():
    """These fits are many small ops: a second thread only spins on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_mixture(weight_logits, means, log_scales, tril):
    """The paper's density from its definition: precision A^T A with A = (I + L) diag(exp(l))."""
    d = means.shape[-1]
    eye = torch.eye(d, dtype=means.dtype)
    lower = torch.tril(tril, -1) if tril is not None else torch.zeros(means.shape[0], d, d).double()
    factor = (eye + lower) @ torch.diag_embed(log_scales.exp())
    precision = factor.transpose(-1, -2) @ factor
    return MixtureSameFamily(
        Categorical(logits=weight_logits), MultivariateNormal(means, precision_matrix=precision)
    )


@pytest.mark.parametrize("full", [True, False])
def test_log_density_equals_mixture_same_family_float64(full):
    g = torch.Generator().manual_seed(0)
    m, d, n = 5, 3, 7
    logits, means = torch.randn(m, generator=g).double(), torch.randn(m, d, generator=g).double()
    log_scales = 0.5 * torch.randn(m, d, generator=g).double()
    tril = torch.randn(m, d, d, generator=g).double() if full else None
    x = 2 * torch.randn(n, d, generator=g).double()
    ours = knife_log_density(
        x, logits[None], means[None], log_scales[None], None if tril is None else tril[None]
    )
    ref = reference_mixture(logits, means, log_scales, tril).log_prob(x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_conditional_log_density_uses_each_samples_own_mixture():
    torch.manual_seed(1)
    model = ConditionalKNIFE(cond_dim=4, dim=3, num_modes=5).double()
    x, y = torch.randn(6, 4).double(), torch.randn(6, 3).double()
    ours = model.log_density(y, x)
    n, m, d = 6, 5, 3
    for i in range(n):
        xi = x[i : i + 1]
        ref = reference_mixture(
            model.weight_net(xi)[0],
            model.mean_net(xi).view(m, d),
            model.log_scale_net(xi).view(m, d),
            model.tril_net(xi).view(m, d, d),
        ).log_prob(y[i])
        torch.testing.assert_close(ours[i], ref, rtol=1e-10, atol=1e-10)


def test_float32_log_density_stays_finite_and_accurate_far_from_every_component():
    torch.manual_seed(2)
    model = MarginalKNIFE(4, 8, init_samples=torch.randn(8, 4))
    x = torch.full((3, 4), 300.0)  # every component's exp() underflows in float32
    lp32 = model.log_density(x)
    lp64 = model.double().log_density(x.double())
    assert torch.isfinite(lp32).all()
    torch.testing.assert_close(lp32.double(), lp64, rtol=1e-5, atol=0)


def test_means_start_at_the_first_batch_and_are_not_reset_later():
    model = MarginalKNIFE(2, 3)
    first = torch.arange(10.0).view(5, 2)
    model(first)
    torch.testing.assert_close(model.means[0], first[:3])
    model(torch.zeros(5, 2))
    torch.testing.assert_close(model.means[0], first[:3])
    assert bool(model.initialized)


def fit_gaussian_entropy(dim, variance, seed, steps=200):
    """The paper's d = 10 setting: M = 128, batch 128, Adam lr 1e-2, 200 steps."""
    torch.manual_seed(seed)
    std = math.sqrt(variance)
    model = MarginalKNIFE(dim, 128, init_samples=std * torch.randn(128, dim))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(std * torch.randn(128, dim))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(model(std * torch.randn(4096, dim)))


def test_d10_gaussian_entropy_within_0p25_nats_of_analytic_after_200_steps():
    analytic = 0.5 * 10 * math.log(2 * math.pi * math.e)  # 14.189 nats
    assert fit_gaussian_entropy(10, 1.0, seed=0) == pytest.approx(analytic, abs=0.25)


def test_halving_the_covariance_lowers_the_estimate_by_d_over_2_log_2():
    drop = fit_gaussian_entropy(10, 0.5, seed=0) - fit_gaussian_entropy(10, 1.0, seed=0)
    assert drop == pytest.approx(-5 * math.log(2), abs=0.25)  # -3.466 nats


def fit_mi(model, rho, dim=2, steps=300, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def sample(n):
        x = torch.randn(n, dim)
        return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim)

    for _ in range(steps):
        out = model(*sample(128))
        opt.zero_grad()
        out.fit_loss.backward()
        opt.step()
    with torch.no_grad():
        return model(*sample(4096))


def conditional_knife():
    # LayerNorm off: on 2-wide inputs it would erase the magnitude of x (see conditioning_net).
    return KNIFE(2, 2, 16, 4, hidden_dim=32, layer_norm=False)


def test_conditional_knife_mi_is_near_zero_for_independent_variables():
    torch.manual_seed(0)
    out = fit_mi(conditional_knife(), rho=0.0)
    assert abs(float(out.mi)) < 0.05


def test_conditional_knife_mi_matches_gaussian_analytic_at_small_mi():
    torch.manual_seed(0)
    out = fit_mi(conditional_knife(), rho=0.6)
    analytic = -math.log(1 - 0.36)  # d = 2: 0.446 nats
    assert float(out.mi) == pytest.approx(analytic, abs=0.1)
    torch.testing.assert_close(out.mi, out.marginal_entropy - out.conditional_entropy)


def test_joint_knife_mi_matches_gaussian_analytic_and_fits_the_sum_of_entropies():
    torch.manual_seed(0)
    out = fit_mi(JointKNIFE(2, 2, num_modes=16), rho=0.6)
    assert float(out.mi) == pytest.approx(-math.log(1 - 0.36), abs=0.1)
    torch.testing.assert_close(out.fit_loss, out.h_x + out.h_y + out.h_xy)
    # h(X) of a 2-D standard Gaussian: log(2 pi e) = 2.838 nats
    assert float(out.h_x) == pytest.approx(math.log(2 * math.pi * math.e), abs=0.1)


def official_kernel_logpdf(x, means, diag, tri, weigh):
    """g-pichler/knife, synthetic_experiments/mi_estimators.py: MultiGaussKernelEE.logpdf
    (joint=False) with its parameters: means (K, d), diag (1, K, d), tri (1, K, d, d), weigh (1, K).
    Note L multiplies the unscaled x - a there: A = diag + tril(tri, -1)."""
    d = x.shape[1]
    x = x[:, None, :]
    w = torch.log_softmax(weigh, dim=1)
    y = x - means
    y = y * diag + torch.squeeze(torch.matmul(torch.tril(tri, diagonal=-1), y[:, :, :, None]), 3)
    y = torch.sum(y**2, dim=2)
    y = -y / 2 + torch.sum(torch.log(torch.abs(diag)), dim=2) + w
    return -d / 2 * math.log(2 * math.pi) + torch.logsumexp(y, dim=-1)


def official_joint_mi(kernels, x, y):
    """MIKernelEstimator(use_joint=True): forward |hz_1 + hz_2 - hz| and learning_loss
    hz_1 + hz_2 + hz, every hz = MultiGaussKernelEE.forward = mean(|-logpdf|)."""
    hz_1, hz_2, hz = (
        torch.mean(torch.abs(-official_kernel_logpdf(v, *k)))
        for v, k in zip((x, y, torch.cat([x, y], dim=1)), kernels, strict=True)
    )
    return torch.abs(hz_1 + hz_2 - hz), hz_1 + hz_2 + hz


def _official_params(kernel: MarginalKNIFE):
    """Our (log-scale l, L) as the official (diag, tri): A = (I + L) D = D + L D, so tri = L D."""
    diag = kernel.log_scales.exp()
    return kernel.means[0], diag, kernel.tril * diag[:, :, None, :], kernel.weight_logits


def test_joint_knife_per_sample_abs_matches_official_mi_kernel_estimator():
    torch.manual_seed(8)
    knife = JointKNIFE(2, 2, num_modes=4, per_sample_abs=True).double()
    with torch.no_grad():  # precision scales e^1.5: peak densities well above 1
        for k in (knife.kernel_x, knife.kernel_y, knife.kernel_xy):
            k.means.copy_(0.5 * torch.randn_like(k.means))
            k.log_scales.copy_(1.5 + 0.3 * torch.randn_like(k.log_scales))
            k.tril.copy_(0.3 * torch.randn_like(k.tril))
            k.weight_logits.copy_(torch.randn_like(k.weight_logits))
            k.initialized.fill_(True)
    x = 0.4 * torch.randn(32, 2, dtype=torch.float64)
    y = x + 0.2 * torch.randn(32, 2, dtype=torch.float64)
    kernels = [_official_params(k) for k in (knife.kernel_x, knife.kernel_y, knife.kernel_xy)]
    log_p = official_kernel_logpdf(x, *kernels[0])
    assert (log_p > 0).any() and (log_p < 0).any()  # densities on both sides of 1
    out = knife(x, y)
    mi_ref, fit_ref = official_joint_mi(kernels, x, y)
    torch.testing.assert_close(out.mi, mi_ref)
    torch.testing.assert_close(out.fit_loss, fit_ref)
    params = list(knife.parameters())
    for a, b in zip(
        torch.autograd.grad(out.fit_loss, params, retain_graph=True),
        torch.autograd.grad(fit_ref, params, retain_graph=True),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    knife.per_sample_abs = False  # ours: |.| on the final MI only; differs once p > 1
    ours = knife(x, y)
    torch.testing.assert_close(ours.h_x, -knife.kernel_x.log_density(x).mean())
    assert abs(ours.fit_loss.item() - fit_ref.item()) > 0.1
