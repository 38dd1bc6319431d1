"""``infossl.mi.estimate`` on the GPU: the Gaussian anchor fitted on the device equals the CPU fit,
and a short anchored run gives the CPU run's held-out curve (same initialisation and batches; the
float32 arithmetic differs only in summation order)."""

import math

import numpy as np
import pytest
import torch


def _pairs(n=2000, dim=5, rho=0.8, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
    y[:, :2] = rho * x[:, :2] + math.sqrt(1 - rho**2) * y[:, :2]
    return x, y


def test_anchor_fitted_on_the_device_equals_the_cpu_fit(cuda):
    from infossl.mi.anchor import GaussianCritic

    x, y = (torch.tensor(a, dtype=torch.float32) for a in _pairs())
    cpu = GaussianCritic(x[:1000], y[:1000])
    gpu = GaussianCritic(x[:1000].to(cuda), y[:1000].to(cuda))
    assert gpu.rank == cpu.rank == 2 and gpu.rho.device.type == "cuda"
    torch.testing.assert_close(gpu.rho.cpu(), cpu.rho, rtol=1e-5, atol=1e-6)
    scores = gpu(x[1000:1100].to(cuda), y[1000:1100].to(cuda)).cpu()
    torch.testing.assert_close(scores, cpu(x[1000:1100], y[1000:1100]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("estimator", ["infonce", "flo", "knife"])
def test_estimate_on_cuda_follows_the_cpu_run(cuda, estimator):
    from infossl.mi import estimate

    x, y = _pairs()
    run = dict(hidden_dim=32, embed_dim=8, batch_size=128, max_steps=200, eval_every=50)
    on_cpu = estimate(x, y, estimator, **run)
    on_gpu = estimate(x, y, estimator, device=cuda, **run)
    assert on_gpu.settings["device"].startswith("cuda")
    assert on_gpu.curve["step"] == on_cpu.curve["step"]
    np.testing.assert_allclose(on_gpu.curve["heldout"], on_cpu.curve["heldout"], atol=0.02)
    assert abs(on_gpu.estimate - on_cpu.estimate) < 0.02 and math.isfinite(on_gpu.stderr)
