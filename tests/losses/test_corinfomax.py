"""CorInfoMax (official CovarianceLossv2 semantics), proved against independent float64
references, closed forms, hand-computed numbers and a 2-process run."""

import io
import math

import pytest
import torch
import torch.nn.functional as F
from dist_harness import run_distributed

from infossl.losses.corinfomax import CorInfoMaxLoss, corinfomax_step

D, N = 6, 10
SETTINGS = {"alpha": 250.0, "la_R": 0.1, "la_mu": 0.2, "eps": 1e-8}
STATE = ("mu1", "mu2", "R1", "R2")


class ReferenceCorInfoMax:
    """Written from the formula of the official loss (serdarozsoy/corinfomax-ssl,
    ``cifars-tiny/loss.py``: ``CovarianceLossv2``) with explicit loops over samples, float64.
    The two flags build the wrong update orders that the order test must tell apart."""

    def __init__(self, dim, la_R, la_mu, eps, alpha, old_mean=False, la_R_on_batch=False):
        self.mu = [torch.zeros(dim, dtype=torch.float64) for _ in range(2)]
        self.R = [torch.eye(dim, dtype=torch.float64) for _ in range(2)]
        self.la_R, self.la_mu, self.eps, self.alpha = la_R, la_mu, eps, alpha
        self.old_mean, self.la_R_on_batch = old_mean, la_R_on_batch

    def step(self, z1, z2):
        zs = [z / z.norm(dim=1, keepdim=True) for z in (z1.double(), z2.double())]
        n, d = zs[0].shape
        logdets = []
        for v, z in enumerate(zs):
            batch_mean = sum(z[i] for i in range(n)) / n
            mu = self.la_mu * self.mu[v] + (1 - self.la_mu) * batch_mean
            center = self.mu[v] if self.old_mean else mu
            cov = sum(torch.outer(z[i] - center, z[i] - center) for i in range(n)) / n
            keep = 1 - self.la_R if self.la_R_on_batch else self.la_R
            R = keep * self.R[v] + (1 - keep) * cov
            logdets.append(torch.logdet(R + self.eps * torch.eye(d, dtype=torch.float64)))
            self.mu[v], self.R[v] = mu.detach(), R.detach()
        mse = sum(((zs[0][i] - zs[1][i]) ** 2).sum() for i in range(n)) / (n * d)
        return self.alpha * mse - (logdets[0] + logdets[1]) / d


def _batches(steps, seed=0, n=N, dim=D):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)) for _ in range(steps)
    ]


def _float64(batches):
    return [(z1.double(), z2.double()) for z1, z2 in batches]


def test_value_gradient_and_state_match_loop_reference_over_several_steps():
    ours = CorInfoMaxLoss(D, **SETTINGS)
    reference = ReferenceCorInfoMax(D, **SETTINGS)
    for z1, z2 in _float64(_batches(4)):
        a1, a2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        b1, b2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        loss = ours(a1, a2)["loss"]
        expected = reference.step(b1, b2)
        assert loss.dtype == torch.float64  # float64 inputs keep a float64 loss
        loss.backward()
        expected.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(a1.grad, b1.grad, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(a2.grad, b2.grad, rtol=1e-9, atol=1e-11)
        for ours_s, ref_s in zip(ours.state, (*reference.mu, *reference.R), strict=True):
            torch.testing.assert_close(ours_s, ref_s, rtol=1e-12, atol=1e-14)


def test_terms_are_detached_and_cond_equals_svd_condition_number():
    ours = CorInfoMaxLoss(D, **SETTINGS)
    z1, z2 = (z.requires_grad_(True) for z in _batches(1, seed=9)[0])
    terms = ours(z1, z2)
    assert terms["loss"].requires_grad
    assert not any(terms[k].requires_grad for k in terms if k != "loss")
    perturbed = ours.R1 + SETTINGS["eps"] * torch.eye(D, dtype=torch.float64)
    torch.testing.assert_close(terms["cond_view1"], torch.linalg.cond(perturbed), rtol=1e-9, atol=0)
    alignment = F.mse_loss(F.normalize(z1.detach()), F.normalize(z2.detach()))
    torch.testing.assert_close(terms["alignment_mse"], alignment)


def _warmed_loss(settings, seed=1):
    loss = CorInfoMaxLoss(D, **settings)
    for z1, z2 in _batches(2, seed=seed):  # leave a non-trivial previous state behind
        loss(z1, z2)
    return loss, [s.clone() for s in loss.state]


def _identical_batch(seed=7):
    z0 = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    batch = (3.0 * z0).expand(N, D).clone()  # every row and both views equal (not unit norm)
    return z0 / z0.norm(), batch


def test_identical_rows_with_la_mu_zero_give_the_closed_form():
    # With la_mu = 0 the new mean is the batch row z0 itself, the centred batch
    # is zero and R = la_R R_prev, so L = -[logdet(la_R R1 + eps I) + logdet(la_R R2 + eps I)]/D.
    settings = {**SETTINGS, "la_mu": 0.0}
    loss, (_, _, R1, R2) = _warmed_loss(settings)
    _, batch = _identical_batch()
    terms = loss(batch, batch.clone())
    assert float(terms["alignment_mse"]) == 0.0
    eps_eye = settings["eps"] * torch.eye(D, dtype=torch.float64)
    la_R = settings["la_R"]
    expected = -(torch.logdet(la_R * R1 + eps_eye) + torch.logdet(la_R * R2 + eps_eye)) / D
    torch.testing.assert_close(terms["loss"].double(), expected, rtol=1e-6, atol=0)


def test_identical_rows_with_la_mu_positive_add_the_rank_one_mean_correction():
    # With la_mu > 0 the new mean is la_mu mu_prev + (1 - la_mu) z0, every centred row equals
    # la_mu (z0 - mu_prev) =: la_mu d, so R = la_R R_prev + (1 - la_R) la_mu^2 d d^T and, by the
    # matrix determinant lemma, logdet(A + c d d^T) = logdet(A) + log(1 + c d^T A^-1 d).
    loss, (mu1, mu2, R1, R2) = _warmed_loss(SETTINGS)
    z0, batch = _identical_batch()
    terms = loss(batch, batch.clone())
    assert float(terms["alignment_mse"]) == 0.0
    c = (1 - SETTINGS["la_R"]) * SETTINGS["la_mu"] ** 2
    logdets = []
    for mu_prev, R_prev in ((mu1, R1), (mu2, R2)):
        A = SETTINGS["la_R"] * R_prev + SETTINGS["eps"] * torch.eye(D, dtype=torch.float64)
        d = z0 - mu_prev
        logdets.append(torch.logdet(A) + torch.log1p(c * d @ torch.linalg.solve(A, d)))
    torch.testing.assert_close(terms["logdet_view1"], logdets[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(terms["logdet_view2"], logdets[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(terms["loss"].double(), -(logdets[0] + logdets[1]) / D)


def test_update_order_hand_computed_one_dimensional_case():
    # D = 1, no normalisation, mu_prev = 0, R_prev = 1, la_mu = 0.5, la_R = 0.25, batch {1, 3}:
    #   official: mu = 0.5*0 + 0.5*2 = 1; centred {0, 2}; cov 2; R = 0.25*1 + 0.75*2 = 1.75
    #   centred with the OLD mean 0: cov (1 + 9)/2 = 5 -> R = 4.0
    #   la_R weighting the NEW batch: R = 0.75*1 + 0.25*2 = 1.25
    z = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    state = CorInfoMaxLoss(1, R_ini=1.0).state
    terms, new = corinfomax_step(
        z, z.clone(), state, alpha=1.0, la_R=0.25, la_mu=0.5, eps=0.0, normalize=False
    )
    assert float(new.mu1) == 1.0 and float(new.R1) == 1.75
    torch.testing.assert_close(
        terms["loss"], torch.tensor(-2 * math.log(1.75), dtype=torch.float64)
    )
    assert torch.equal(state.R1, torch.ones(1, 1, dtype=torch.float64))  # input state untouched


@pytest.mark.parametrize("wrong", [{"old_mean": True}, {"la_R_on_batch": True}])
def test_update_order_differs_measurably_from_wrong_orders_over_steps(wrong):
    ours = CorInfoMaxLoss(D, **SETTINGS)
    right = ReferenceCorInfoMax(D, **SETTINGS)
    other = ReferenceCorInfoMax(D, **SETTINGS, **wrong)
    gaps = []
    for z1, z2 in _float64(_batches(3, seed=2)):
        value = float(ours(z1, z2)["loss"])
        assert value == pytest.approx(float(right.step(z1, z2)), rel=1e-12)
        gaps.append(abs(value - float(other.step(z1, z2))))
    assert max(gaps) > 1e-2  # the wrong order is measurably different


def test_buffers_survive_save_and_load_bit_exactly_and_next_step_matches():
    loss = CorInfoMaxLoss(D, **SETTINGS)
    batches = _batches(3, seed=3)
    for z1, z2 in batches[:2]:
        loss(z1, z2)
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    restored = CorInfoMaxLoss(D, **SETTINGS)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for name in STATE:
        assert getattr(restored, name).dtype == torch.float64
        assert torch.equal(getattr(restored, name), getattr(loss, name))
    z1, z2 = batches[2]
    assert torch.equal(restored(z1, z2)["loss"], loss(z1, z2)["loss"])
    for name in STATE:
        assert torch.equal(getattr(restored, name), getattr(loss, name))


def test_eval_mode_gives_the_training_value_without_moving_the_state():
    trained, _ = _warmed_loss(SETTINGS)
    frozen = CorInfoMaxLoss(D, **SETTINGS)
    frozen.load_state_dict(trained.state_dict())
    frozen.eval()
    before = [s.clone() for s in frozen.state]
    z1, z2 = _batches(1, seed=4)[0]
    value = frozen(z1, z2)["loss"]
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.state, strict=True))
    assert torch.equal(value, trained(z1, z2)["loss"])  # same value a training step computes


def test_half_precision_state_is_refused_with_a_clear_error():
    loss = CorInfoMaxLoss(D, **SETTINGS).to(torch.bfloat16)  # what a "true" bf16 cast would do
    with pytest.raises(TypeError, match="must stay float64"):
        loss(*_batches(1)[0])


def _naive_half_logdet(z, dtype, steps_state):
    """CorInfoMax's view-1 log-det with mean, covariance, state and eps in half precision
    (what keeping everything under autocast with half state would do); only the factorisation
    is upcast, because torch.logdet has no half kernels."""
    mu, R = steps_state
    z = F.normalize(z.to(dtype), dim=1)
    mu = 0.01 * mu + 0.99 * z.mean(0)
    c = z - mu
    R = 0.01 * R + 0.99 * (c.T @ c) / z.shape[0]
    eye = torch.eye(R.shape[0], dtype=dtype)
    return torch.logdet((R + 1e-8 * eye).float()), (mu, R)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])  # CPU autocast has both
def test_autocast_near_singular_loss_is_exact_and_naive_half_logdet_is_not(dtype):
    # Rank-16 inputs to a 64-d projector: the initial identity decays as la_R^t, so after a few
    # steps R's smallest eigenvalues sit near eps = 1e-8 (condition number > 1e6): the regime
    # eps exists for. Stated tolerance: the autocast loss equals the loss of the same
    # (half-precision) embeddings computed without autocast to rtol 1e-7 (measured: 0 difference;
    # the covariance and log-det run in float64 in both). A half-precision covariance misses by
    # far more than that (measured after step 6: view-1 log-det -524 vs exact -849 in bf16,
    # -623 vs -917 in fp16; NaN at some earlier steps).
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    projector = torch.nn.Linear(32, 64)
    mixed, fp32 = (CorInfoMaxLoss(64, alpha=1.0, la_R=0.01, la_mu=0.01) for _ in range(2))
    naive = (torch.zeros(64, dtype=dtype), torch.eye(64, dtype=dtype))
    for _ in range(6):
        x1, x2 = torch.randn(256, 32, generator=g), torch.randn(256, 32, generator=g)
        x1[:, 16:] = 0
        x2[:, 16:] = 0
        with torch.autocast("cpu", dtype=dtype):
            z1, z2 = projector(x1), projector(x2)
            assert z1.dtype == dtype
            terms = mixed(z1, z2)
        z1_fp32 = z1.detach().float().requires_grad_(True)
        reference = fp32(z1_fp32, z2.detach().float())
        naive_logdet, naive = _naive_half_logdet(z1.detach(), dtype, naive)
    assert torch.isfinite(terms["loss"]) and terms["cond_view1"] > 1e6
    torch.testing.assert_close(terms["loss"], reference["loss"], rtol=1e-7, atol=0)
    # The gradient reaching the half-precision embeddings is the float32 one, rounded once.
    grad_mixed = torch.autograd.grad(terms["loss"], z1)[0]
    grad_fp32 = torch.autograd.grad(reference["loss"], z1_fp32)[0]
    assert grad_mixed.dtype == dtype and torch.isfinite(grad_mixed).all()
    assert torch.equal(grad_mixed, grad_fp32.to(dtype))
    exact = float(reference["logdet_view1"])
    assert not torch.isfinite(naive_logdet) or abs(float(naive_logdet) - exact) > 1.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_well_conditioned_loss_equals_full_float32_pipeline(dtype):
    # Full-rank inputs (cond ~50): the only difference is the half-precision rounding of the
    # embeddings. Stated tolerance rtol 5e-5 (measured 4.4e-6 for bf16, 2.1e-6 for fp16).
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    projector = torch.nn.Linear(128, 64)
    mixed, fp32 = (CorInfoMaxLoss(64, alpha=1.0, la_R=0.01, la_mu=0.01) for _ in range(2))
    for _ in range(6):
        x1, x2 = torch.randn(256, 128, generator=g), torch.randn(256, 128, generator=g)
        with torch.no_grad():
            with torch.autocast("cpu", dtype=dtype):
                terms = mixed(projector(x1), projector(x2))
            reference = fp32(projector(x1), projector(x2))
    assert torch.isfinite(terms["loss"])
    torch.testing.assert_close(terms["loss"], reference["loss"], rtol=5e-5, atol=0)


def _two_process_steps(rank, world, batches):
    loss = CorInfoMaxLoss(D, **SETTINGS)
    out = []
    for z1, z2 in batches:
        a1 = z1.chunk(world)[rank].clone().requires_grad_(True)
        a2 = z2.chunk(world)[rank].clone().requires_grad_(True)
        terms = loss(a1, a2)
        terms["loss"].backward()
        out.append(({k: v.detach() for k, v in terms.items()}, a1.grad, a2.grad))
    return out, {k: v.clone() for k, v in loss.state_dict().items()}


def test_two_processes_match_one_process_including_moving_averages():
    batches = _float64(_batches(3, seed=6))
    single = CorInfoMaxLoss(D, **SETTINGS)
    expected = []
    for z1, z2 in batches:
        a1, a2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        terms = single(a1, a2)
        terms["loss"].backward()
        expected.append(({k: v.detach() for k, v in terms.items()}, a1.grad, a2.grad))
    results = run_distributed(_two_process_steps, 2, (batches,))
    for rank, (steps, state) in enumerate(results):
        for (terms, g1, g2), (ref, r1, r2) in zip(steps, expected, strict=True):
            for key in ref:
                torch.testing.assert_close(terms[key], ref[key], rtol=1e-12, atol=1e-12)
            # gather_cat convention: each process's local gradient is world_size x the
            # one-process gradient of its rows (DDP's averaging then restores it).
            torch.testing.assert_close(g1 / 2, r1.chunk(2)[rank], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(g2 / 2, r2.chunk(2)[rank], rtol=1e-10, atol=1e-12)
        for key, value in single.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=1e-15)
