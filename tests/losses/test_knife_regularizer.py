"""KnifeRegularizer: one fit step of its own Adam per call, a term whose value and input-gradient
equal a float64 reference built with torch.distributions from the estimator's parameters, no
gradient into the estimator from the term, MI with labels against log(#classes), a checkpoint
round trip (Adam state included, weights_only load), and the collapse diagnostic against the
analytic Gaussian entropy."""

import io
import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from infossl.losses.knife_regularizer import KnifeRegularizer, knife_entropy_diagnostic


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ENTROPY = {"name": "knife_entropy", "on": "embeddings", "weight": 0.5, "modes": 8}


def reference_entropy(estimator, x):
    """-mean log p(x) in float64 from the definition: precision (A^T A), A = (I + L) diag(e^l)."""
    d = x.shape[1]
    means = estimator.means[0].double()
    factor = torch.diag_embed(estimator.log_scales[0].double().exp().expand_as(means))
    if estimator.tril is not None:
        factor = (torch.eye(d).double() + torch.tril(estimator.tril[0].double(), -1)) @ factor
    mixture = MixtureSameFamily(
        Categorical(logits=estimator.weight_logits[0].double()),
        MultivariateNormal(means, precision_matrix=factor.transpose(-1, -2) @ factor),
    )
    return -mixture.log_prob(x).mean()


def test_call_takes_one_adam_step_on_the_estimator_and_term_gradient_reaches_only_the_encoder():
    torch.manual_seed(0)
    encoder = nn.Linear(6, 3)
    reg = KnifeRegularizer(ENTROPY, dim=3)
    inputs = torch.randn(32, 6)
    reg(encoder(inputs))  # first call: lazy init + one step
    before = {k: v.clone() for k, v in reg.estimator.named_parameters()}
    x = encoder(inputs)
    term, logs = reg(x)
    changed = [k for k, v in reg.estimator.named_parameters() if not torch.equal(v, before[k])]
    assert set(changed) == {"means", "log_scales", "tril", "weight_logits"}
    assert reg.optimizer.state[reg.estimator.means]["step"] == 2
    term.backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in reg.estimator.parameters())
    assert set(logs) == {"knife_entropy", "knife_fit_loss"}
    assert not logs["knife_entropy"].requires_grad


@pytest.mark.parametrize("standardize", [True, False])
def test_term_value_and_input_gradient_equal_float64_reference_of_the_fitted_mixture(standardize):
    torch.manual_seed(1)
    reg = KnifeRegularizer({**ENTROPY, "standardize": standardize}, dim=3)
    reg(torch.randn(32, 3))
    x = (3.0 * torch.randn(32, 3) + 1.0).requires_grad_(True)
    term, logs = reg(x)  # maximize (default for entropy): term = -weight * h
    (grad,) = torch.autograd.grad(term, x)
    x64 = x.detach().double().requires_grad_(True)
    seen = x64
    if standardize:  # per-dimension batch statistics, population variance + 1e-4, differentiable
        seen = (x64 - x64.mean(0)) / torch.sqrt(x64.var(0, unbiased=False) + 1e-4)
    ref = -0.5 * reference_entropy(reg.estimator, seen)
    (ref_grad,) = torch.autograd.grad(ref, x64)
    assert float(term.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert float(logs["knife_entropy"]) == pytest.approx(-2 * float(ref.detach()), rel=1e-5)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-6)


def test_standardized_entropy_ignores_the_scale_of_the_embeddings():
    # Raw differential entropy grows by d log a under x -> a x, which an encoder maximizing it
    # would exploit without bound; the standardized term must not move.
    torch.manual_seed(4)
    x = torch.randn(64, 3) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    reg = KnifeRegularizer({**ENTROPY, "lr": 0.0}, dim=3)
    reg(x)
    _, small = reg(x)
    _, large = reg(1000.0 * x)
    assert float(large["knife_entropy"]) == pytest.approx(float(small["knife_entropy"]), abs=1e-3)


def test_minimize_direction_flips_the_sign():
    torch.manual_seed(2)
    x = torch.randn(16, 3)
    up = KnifeRegularizer({**ENTROPY, "direction": "maximize"}, dim=3)
    down = KnifeRegularizer({**ENTROPY, "direction": "minimize"}, dim=3)
    down.load_state_dict(up.state_dict())
    torch.manual_seed(0)  # the lazy init's scale noise
    t_up, logs = up(x)
    torch.manual_seed(0)
    t_down, _ = down(x)
    assert float(t_up) == pytest.approx(-0.5 * float(logs["knife_entropy"]))
    assert float(t_down) == pytest.approx(-float(t_up))


def test_mi_with_labels_approaches_log_2_for_two_separated_clusters_and_0_for_random_labels():
    torch.manual_seed(3)
    cfg = {"name": "knife_mi", "nuisance": "label", "num_classes": 2, "weight": 1.0}
    cfg.update(modes=4, conditional_modes=2, lr=1e-2, hidden_dim=16)
    informative, random_labels = KnifeRegularizer(cfg, dim=1), KnifeRegularizer(cfg, dim=1)
    for _ in range(300):
        labels = torch.randint(0, 2, (128,))
        z = (4.0 * labels - 2.0 + 0.3 * torch.randn(128))[:, None]  # clusters at -2 and +2
        term, logs = informative(z, labels)
        _, logs_random = random_labels(z, torch.randint(0, 2, (128,)))
    # I(Z; label) = H(label) = log 2 for separated clusters; minimize -> term = +weight * I
    assert float(logs["knife_mi"]) == pytest.approx(math.log(2), abs=0.1)
    assert float(term) == pytest.approx(float(logs["knife_mi"]))
    assert abs(float(logs_random["knife_mi"])) < 0.1
    assert float(logs["knife_mi"]) == pytest.approx(
        float(logs["knife_marginal_entropy"] - logs["knife_conditional_entropy"]), abs=1e-5
    )


def test_state_dict_round_trip_restores_parameters_and_adam_state_under_weights_only_load():
    torch.manual_seed(4)
    cfg = {"name": "knife_mi", "nuisance": "data", "num_classes": 3, "modes": 4}
    reg = KnifeRegularizer(cfg, dim=2)
    batches = [(torch.randn(16, 2), torch.randint(0, 3, (16,))) for _ in range(4)]
    for z, n in batches[:3]:
        reg(z, n)
    buffer = io.BytesIO()
    torch.save(reg.state_dict(), buffer)
    buffer.seek(0)
    restored = KnifeRegularizer(cfg, dim=2)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert bool(restored.estimator.marginal.initialized)
    state = restored.optimizer.state_dict()["state"]
    assert len(state) == len(reg._trainable) and all(int(s["step"]) == 3 for s in state.values())
    # one more identical step from both: identical only if Adam's moments were restored too
    term_a, _ = reg(*batches[3])
    term_b, _ = restored(*batches[3])
    assert float(term_a) == float(term_b)
    for (name, a), b in zip(reg.state_dict().items(), restored.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), name


def test_config_errors_are_explicit():
    with pytest.raises(ValueError, match="name must be one of"):
        KnifeRegularizer({"name": "knife"}, dim=2)
    with pytest.raises(ValueError, match="input width"):
        KnifeRegularizer({"name": "knife_entropy"})
    with pytest.raises(ValueError, match="num_classes"):
        KnifeRegularizer({"name": "knife_mi"}, dim=2)


def test_defaults_from_the_yaml_files_are_the_estimators_settings():
    """A bare entry gets configs/regularizers/<name>.yaml: the official loop's Adam (lr 1e-3,
    betas (0.5, 0.999)), 128 kernels, full covariance up to 64-d, one fit step."""
    entropy = KnifeRegularizer({"name": "knife_entropy"}, dim=32)
    assert (entropy.weight, entropy.direction, entropy.standardize) == (1.0, "maximize", True)
    assert entropy.on == "embeddings" and entropy.fit_steps == 1 and entropy.nuisance is None
    assert entropy.estimator.means.shape == (1, 128, 32)
    assert entropy.estimator.tril is not None  # auto: full covariance at 32-d
    assert KnifeRegularizer({"name": "knife_entropy"}, dim=65).estimator.tril is None
    group = entropy.optimizer.param_groups[0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.5, 0.999)

    mi = KnifeRegularizer({"name": "knife_mi", "num_classes": 10}, dim=32)
    assert (mi.weight, mi.direction, mi.standardize, mi.nuisance) == (
        1.0,
        "minimize",
        False,
        "label",
    )
    conditional = mi.estimator.conditional
    assert mi.estimator.marginal.means.shape == (1, 128, 32)
    assert conditional.mean_net[-1].out_features == 128 * 32  # conditional_modes: modes
    assert conditional.mean_net[1].weight.shape == (32, 10)  # hidden_dim: dim; one-hot of 10
    assert isinstance(conditional.mean_net[0], nn.LayerNorm)  # layer_norm: true
    assert conditional.tril_net is None  # conditional full covariance only up to 16-d
    # a given key overrides its default, the others stay
    small = KnifeRegularizer({"name": "knife_mi", "num_classes": 3, "modes": 4, "lr": 0.01}, 8)
    assert small.estimator.marginal.means.shape == (1, 4, 8)
    assert small.optimizer.param_groups[0]["lr"] == 0.01
    assert small.optimizer.param_groups[0]["betas"] == (0.5, 0.999)


def test_diagnostic_matches_analytic_entropy_of_a_small_scale_gaussian_under_inference_mode():
    torch.manual_seed(5)
    sigma, d = 0.05, 4  # embedding-like scale: far from the unit precision KNIFE starts with
    x = sigma * torch.randn(1024, d)
    analytic = 0.5 * d * math.log(2 * math.pi * math.e * sigma**2)  # -6.30 nats
    rng_before = torch.get_rng_state()
    with torch.inference_mode():
        h = knife_entropy_diagnostic(x, steps=150, modes=32)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert h == pytest.approx(analytic, abs=0.2)
    # collapse onto a 1-D line shows up as a much lower entropy
    collapsed = torch.randn(1024, 1) * torch.ones(1, d) * sigma + 1e-3 * torch.randn(1024, d)
    assert knife_entropy_diagnostic(collapsed, steps=150, modes=32) < analytic - 5
