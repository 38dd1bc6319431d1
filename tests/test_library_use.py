"""README's "Use the losses in your own code": its code blocks (each marked with
``<!-- library-example -->``) run as written, in one namespace, and compute what they say.

The user's LightningModule trains two steps with each of CorInfoMax, FLO and ReMINE; the loss
modules give the values of their formulas on fixed tensors, computed by hand here; the bounds on
the README's score matrix equal their closed forms and ``infossl.mi.estimate`` recovers the
Gaussian's known MI."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from train_helpers import ROOT

MARK = "<!-- library-example -->"


def library_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use the losses in your own code", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(re.escape(MARK) + r"\n```python\n(.*?)\n```", section, flags=re.S)
    assert len(blocks) == section.count(MARK) == 3
    return blocks


@pytest.fixture(scope="module")
def readme_run():
    torch.manual_seed(0)
    namespace: dict = {"__name__": "readme_example"}
    first, train, mi = library_blocks()
    exec(compile(first, "README.md:library-example-1", "exec"), namespace)
    rng = torch.get_rng_state()
    exec(compile(train, "README.md:library-example-2", "exec"), namespace)
    torch.set_rng_state(rng)  # the same draws again: the model as it was before training
    from infossl.losses import CorInfoMaxLoss

    namespace["untrained"] = namespace["TwoViewSSL"](CorInfoMaxLoss(dim=16))
    exec(compile(mi, "README.md:library-example-3", "exec"), namespace)
    return namespace


def test_the_users_module_trains_two_steps_and_moves_weights_and_loss_state(readme_run):
    model, untrained = readme_run["model"], readme_run["untrained"]
    assert readme_run["trainer"].global_step == 2
    for (name, trained), (_, before) in zip(
        model.encoder.named_parameters(), untrained.encoder.named_parameters(), strict=True
    ):
        assert not torch.equal(trained.detach(), before), name
    # CorInfoMax's moving covariance left the identity it starts from, still float64 and
    # symmetric: la_R = 0.01 keeps 1% of the previous estimate per step, so
    # R1 = 0.01^2 I + (covariance terms), diagonal far below 1.
    R1 = model.loss.R1
    assert R1.dtype == torch.float64
    torch.testing.assert_close(R1, R1.T)
    assert R1.diagonal().max() < 0.5
    assert model.loss.mu1.abs().sum() > 0


def _encode(model, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n, 3, 8, 8, generator=g)
    with torch.no_grad():
        return model.encoder(images), model.encoder(images + 0.1 * torch.randn_like(images))


def test_corinfomax_loss_in_the_module_is_the_papers_formula(readme_run):
    from infossl.losses import CorInfoMaxLoss

    z1, z2 = _encode(readme_run["model"])
    terms = CorInfoMaxLoss(dim=16, alpha=250.0, la_R=0.01, la_mu=0.01)(z1, z2)
    # One step from the initial state (mu = 0, R = I), CovarianceLossv2's order, in float64.
    a, b = (F.normalize(z.double(), dim=1) for z in (z1, z2))
    logdets = []
    for z in (a, b):
        mu = 0.99 * z.mean(0)
        R = 0.01 * torch.eye(16, dtype=torch.float64) + 0.99 * (z - mu).T @ (z - mu) / z.shape[0]
        logdets.append(torch.logdet(R + 1e-8 * torch.eye(16, dtype=torch.float64)))
    expected = 250.0 * ((a - b) ** 2).mean() - (logdets[0] + logdets[1]) / 16
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["logdet_view1"].item() == pytest.approx(logdets[0].item(), rel=1e-9)


def test_remine_dv_loss_in_the_module_is_dv_plus_the_regularizer(readme_run):
    from infossl.losses import ReMINESSLLoss

    z1, z2 = _encode(readme_run["model"])
    terms = ReMINESSLLoss(estimator="dv", reg_weight=0.1)(z1, z2)
    scores = (z1 @ z2.T).double()  # critic <f(x1), f(x2)>, temperature 1, unnormalized
    n = scores.shape[0]
    off = scores.masked_select(~torch.eye(n, dtype=torch.bool))
    log_z = torch.logsumexp(off, 0) - math.log(n * (n - 1))
    dv = scores.diagonal().mean() - log_z
    assert terms["mi_estimate"].item() == pytest.approx(dv.item(), abs=1e-4)
    assert terms["log_partition"].item() == pytest.approx(log_z.item(), abs=1e-4)
    assert terms["loss"].item() == pytest.approx((-dv + 0.1 * log_z**2).item(), abs=1e-4)


def test_flo_loss_in_the_module_reads_its_u_head(readme_run):
    from infossl.losses import FLOSSLLoss

    torch.manual_seed(2)
    loss = FLOSSLLoss(dim=16)
    z1, z2 = _encode(readme_run["model"])
    terms = loss(z1, z2)
    h1, h2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    g = h1 @ h2.T / 0.1
    u = loss.u_head(torch.cat([h1, h2], 1)).squeeze(1).detach()
    n = g.shape[0]
    neg = g.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    log_mean_neg = torch.logsumexp(neg, 1) - math.log(n - 1)
    per_row = u + torch.exp(-u + log_mean_neg - g.diagonal()) - 1  # FLO, preprint Eq. 11
    assert terms["mi_estimate"].item() == pytest.approx(-per_row.mean().item(), rel=1e-5)
    assert terms["neg_pmi"].item() == pytest.approx(u.mean().item(), rel=1e-5)


def test_bounds_on_the_readme_score_matrix_are_their_closed_forms(readme_run):
    from infossl.losses.mi_bounds import infonce, smile

    scores = readme_run["scores"].double()
    n = scores.shape[0]
    assert scores.shape == (1000, 1000)
    # InfoNCE: mean_i [T_ii - log (1/K) sum_j e^{T_ij}]
    nce = (scores.diagonal() - torch.logsumexp(scores, 1) + math.log(n)).mean()
    assert infonce(readme_run["scores"]).mi.item() == pytest.approx(nce.item(), abs=1e-4)
    # SMILE, tau = 5: E_P[T] - log E_Q[e^{clip(T)}] over the off-diagonal pairs
    off = scores.clamp(-5, 5).masked_select(~torch.eye(n, dtype=torch.bool))
    sm = scores.diagonal().mean() - (torch.logsumexp(off, 0) - math.log(n * (n - 1)))
    assert smile(readme_run["scores"], clip=5.0).mi.item() == pytest.approx(sm.item(), abs=1e-4)
    # With the true log density ratio as critic both bounds read the sample's mean PMI (the
    # diagonal's mean, 0.532), I = -log(1 - rho^2) = 0.446 up to this sample's deviation: the
    # printed 0.529, 0.531.
    mean_pmi = scores.diagonal().mean().item()
    assert mean_pmi == pytest.approx(0.532, abs=5e-4)
    assert nce.item() == pytest.approx(0.529, abs=5e-4)
    assert sm.item() == pytest.approx(0.531, abs=5e-4)
    assert abs(nce.item() - mean_pmi) < 0.01 and abs(sm.item() - mean_pmi) < 0.01
    assert nce.item() < math.log(n)


def test_estimate_recovers_the_known_mi(readme_run):
    result = readme_run["result"]
    true_mi = -math.log(1 - 0.6**2)
    assert result.estimator == "smile"
    assert 0.01 < result.stderr < 0.1
    assert abs(result.estimate - true_mi) < 3 * result.stderr, (result.estimate, true_mi)
    assert result.ci[0] < true_mi < result.ci[1]
