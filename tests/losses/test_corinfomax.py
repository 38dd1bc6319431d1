"""CorInfoMax: the official CovarianceLossv2 semantics, proved against independent references."""

import io

import numpy as np
import pytest
import torch
from dist_harness import run_distributed

from infossl.losses.corinfomax import CorInfoMaxLoss

D, N = 6, 10
SETTINGS = {"alpha": 250.0, "la_R": 0.1, "la_mu": 0.2, "eps": 1e-8}


class ReferenceCorInfoMax:
    """Written from the formula (methods.md 1.2) with explicit loops over samples, float64."""

    def __init__(
        self,
        dim,
        la_R,
        la_mu,
        eps,
        alpha,
        R_ini=1.0,
        center_with_old_mean=False,
        la_R_on_new_batch=False,
    ):
        self.mu = [torch.zeros(dim, dtype=torch.float64) for _ in range(2)]
        self.R = [R_ini * torch.eye(dim, dtype=torch.float64) for _ in range(2)]
        self.la_R, self.la_mu, self.eps, self.alpha = la_R, la_mu, eps, alpha
        self.old_mean, self.swap = center_with_old_mean, la_R_on_new_batch

    def step(self, z1, z2):
        zs = [z / z.norm(dim=1, keepdim=True) for z in (z1.double(), z2.double())]
        n, d = zs[0].shape
        logdets = []
        for v, z in enumerate(zs):
            batch_mean = sum(z[i] for i in range(n)) / n
            mu = self.la_mu * self.mu[v] + (1 - self.la_mu) * batch_mean
            center = self.mu[v] if self.old_mean else mu
            cov = sum(torch.outer(z[i] - center, z[i] - center) for i in range(n)) / n
            keep, new = (1 - self.la_R, self.la_R) if self.swap else (self.la_R, 1 - self.la_R)
            R = keep * self.R[v] + new * cov
            logdets.append(torch.logdet(R + self.eps * torch.eye(d, dtype=torch.float64)))
            self.mu[v], self.R[v] = mu.detach(), R.detach()
        mse = sum(((zs[0][i] - zs[1][i]) ** 2).sum() for i in range(n)) / (n * d)
        return self.alpha * mse - (logdets[0] + logdets[1]) / d


def _batches(steps, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(N, D, generator=g, dtype=dtype), torch.randn(N, D, generator=g, dtype=dtype))
        for _ in range(steps)
    ]


def test_value_and_gradient_match_reference_over_several_steps():
    ours = CorInfoMaxLoss(D, **SETTINGS)
    reference = ReferenceCorInfoMax(D, **SETTINGS)
    for z1, z2 in _batches(4):
        a1, a2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        b1, b2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        loss = ours(a1, a2)["loss"].double()
        expected = reference.step(b1, b2)
        loss.backward()
        expected.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a1.grad, b1.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(a2.grad, b2.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.R1, reference.R[0])
    torch.testing.assert_close(ours.mu2, reference.mu[1])


def test_identical_views_give_zero_alignment_and_closed_form_logdet():
    loss = CorInfoMaxLoss(D, **SETTINGS)
    for z1, z2 in _batches(2, seed=1):  # leave a non-trivial previous state behind
        loss(z1, z2)
    R_prev, mu_prev = loss.R1.clone(), loss.mu1.clone()
    z0 = torch.randn(D, dtype=torch.float64)
    z0 = z0 / z0.norm()
    batch = z0.expand(N, D).clone()  # every sample identical, both views identical
    terms = loss(batch, batch.clone())
    assert float(terms["alignment_mse"]) == 0.0
    # Centring with the new mean leaves la_mu * (z0 - mu_prev) in every row, so
    # R = la_R R_prev + (1 - la_R) la_mu^2 d d^T with d = z0 - mu_prev; by the matrix
    # determinant lemma logdet(A + c d d^T) = logdet(A) + log(1 + c d^T A^-1 d).
    d = z0 - mu_prev
    A = SETTINGS["la_R"] * R_prev + SETTINGS["eps"] * torch.eye(D, dtype=torch.float64)
    c = (1 - SETTINGS["la_R"]) * SETTINGS["la_mu"] ** 2
    expected = torch.logdet(A) + torch.log(1 + c * d @ torch.linalg.solve(A, d))
    torch.testing.assert_close(terms["logdet_view1"], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("wrong", [{"center_with_old_mean": True}, {"la_R_on_new_batch": True}])
def test_update_order_is_the_official_one(wrong):
    ours = CorInfoMaxLoss(D, **SETTINGS)
    right = ReferenceCorInfoMax(D, **SETTINGS)
    other = ReferenceCorInfoMax(D, **SETTINGS, **wrong)
    gaps = []
    for z1, z2 in _batches(3, seed=2):
        value = float(ours(z1, z2)["loss"])
        assert value == pytest.approx(float(right.step(z1, z2)), rel=1e-6)
        gaps.append(abs(value - float(other.step(z1, z2))))
    assert max(gaps) > 1e-2  # the wrong order is measurably different


def test_buffers_survive_save_and_load_bit_exactly():
    loss = CorInfoMaxLoss(D, **SETTINGS)
    batches = _batches(3, seed=3)
    for z1, z2 in batches[:2]:
        loss(z1, z2)
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    restored = CorInfoMaxLoss(D, **SETTINGS)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for name in ("mu1", "mu2", "R1", "R2"):
        assert torch.equal(getattr(restored, name), getattr(loss, name))
        assert getattr(restored, name).dtype == torch.float64
    z1, z2 = batches[2]
    assert torch.equal(restored(z1, z2)["loss"], loss(z1, z2)["loss"])


def test_eval_mode_does_not_move_the_state():
    loss = CorInfoMaxLoss(D, **SETTINGS).eval()
    z1, z2 = _batches(1, seed=4)[0]
    loss(z1, z2)
    assert torch.equal(loss.R1, torch.eye(D, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_loss_is_finite_and_close_to_float32(dtype):
    g = torch.Generator().manual_seed(5)
    projector = torch.nn.Linear(32, 64)
    fp32 = CorInfoMaxLoss(64, alpha=1.0, la_R=0.01, la_mu=0.01, eps=1e-8)
    mixed = CorInfoMaxLoss(64, alpha=1.0, la_R=0.01, la_mu=0.01, eps=1e-8)
    for _ in range(6):
        # Rank-deficient embeddings (rank 16 of 64) drive R towards singular as la_R^t decays
        # the initial identity: after a few steps the smallest eigenvalues sit near eps.
        x1, x2 = torch.randn(256, 32, generator=g), torch.randn(256, 32, generator=g)
        x1[:, 16:] = 0
        x2[:, 16:] = 0
        with torch.no_grad():
            with torch.autocast("cpu", dtype=dtype):
                z1, z2 = projector(x1), projector(x2)
                assert z1.dtype == dtype
                terms = mixed(z1, z2)
            # The float32 loss of the very same (half-precision) embeddings, no autocast.
            reference = fp32(z1.float(), z2.float())
    assert torch.isfinite(terms["loss"])
    # Under autocast the loss upcasts and runs the covariance and log-det in float64, so it
    # equals the float32 path to float64 rounding; tolerance 1e-9 relative.
    torch.testing.assert_close(terms["loss"], reference["loss"], rtol=1e-6, atol=0)
    torch.testing.assert_close(terms["logdet_view1"], reference["logdet_view1"], rtol=1e-9, atol=0)
    tolerance = 0.02 * abs(float(reference["logdet_view1"]))
    # What a naive half-precision covariance gives for the same state: rounding the entries of
    # R to bf16/fp16 (and eps = 1e-8 with them) destroys the eigenvalues near eps.
    eye = torch.eye(64, dtype=torch.float64)
    naive = torch.logdet((fp32.R1.to(dtype) + 1e-8 * eye.to(dtype)).double())
    assert not torch.isfinite(naive) or abs(float(naive - reference["logdet_view1"])) > tolerance


def _two_process_step(rank, world, batches):
    loss = CorInfoMaxLoss(D, **SETTINGS)
    out = []
    for z1, z2 in batches:
        a1 = z1.chunk(world)[rank].clone().requires_grad_(True)
        a2 = z2.chunk(world)[rank].clone().requires_grad_(True)
        value = loss(a1, a2)["loss"]
        value.backward()
        out.append((value.detach(), a1.grad, a2.grad))
    return out, {k: v.clone() for k, v in loss.state_dict().items()}


def test_two_processes_match_one_process_including_moving_averages():
    batches = _batches(3, seed=6)
    single = CorInfoMaxLoss(D, **SETTINGS)
    expected = []
    for z1, z2 in batches:
        a1, a2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        value = single(a1, a2)["loss"]
        value.backward()
        expected.append((value.detach(), a1.grad, a2.grad))
    results = run_distributed(_two_process_step, 2, (batches,))
    for rank, (steps, state) in enumerate(results):
        for (value, g1, g2), (ref, r1, r2) in zip(steps, expected, strict=True):
            torch.testing.assert_close(value, ref)
            # Gradient convention of gather_cat: world_size x, undone by DDP's averaging.
            torch.testing.assert_close(g1 / 2, r1.chunk(2)[rank])
            torch.testing.assert_close(g2 / 2, r2.chunk(2)[rank])
        for key, value in single.state_dict().items():
            assert np.array_equal(state[key].numpy(), value.numpy()) or torch.allclose(
                state[key], value, rtol=0, atol=1e-12
            ), key
