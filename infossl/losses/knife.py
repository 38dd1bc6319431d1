"""KNIFE: Kernelized-Neural differential entropy estimation (Pichler et al., ICML 2022).

Follows the official code, g-pichler/knife @ bec8e057; the paper's text was not available, so
wherever it could be ambiguous the code decides, and the comments say which file.

Density model (``da_experiments/estimators/knife.py: MargKernel.logpdf``): a Gaussian mixture
    p(x) = sum_m w_m N(x; a_m, (A_m^T A_m)^-1),   A_m = (I + L_m) diag(exp(l_m)),
with L_m strictly lower-triangular, so A_m is a *precision* factor and log|det A_m| = sum_i l_m,i
(I + L_m has a unit diagonal). The official code names l "logvar" although exp(l) multiplies
(x - a): it is the log of a precision scale, not of a variance. Hence
    log p(x) = -(d/2) log 2 pi
               + logsumexp_m [ log_softmax(w)_m + sum_i l_m,i - ||A_m (x - a_m)||^2 / 2 ].
The official code adds 1e-8 inside log|exp(l)|; we use l itself (exact, and finite in float32).

Entropy: h(X) ~ -mean_n log p(x_n). Fitting minimises the same number (a cross-entropy, an upper
bound on h when p is misfit), so the fitting loss *is* the estimate.

MI (official ``KNIFE`` class): I(X; Y) = h(Y) - h(Y | X), fitted with h(Y) + h(Y | X); the
conditional density's weights, means, log-scales (and optionally L) are small networks of X.
Joint variant (``synthetic_experiments/mi_estimators.py: MIKernelEstimator(use_joint=True)``, used
for the paper's Gaussian MI staircase): I = |h(X) + h(Y) - h(X, Y)| ("abs to stay +"), fitted with
h(X) + h(Y) + h(X, Y); the official per-sample |-log p| is an option (``JointKNIFE``).

Numerics: every log-density is one log-sum-exp over the components of finite terms, and the
module casts to float32 (or keeps float64) outside autocast, so half precision never reaches it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn


def knife_log_density(
    x: torch.Tensor,
    weight_logits: torch.Tensor,
    means: torch.Tensor,
    log_scales: torch.Tensor,
    tril: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(x_n) of the KNIFE mixture for each row of ``x`` (N, d) -> (N,).

    Shapes (a leading 1 broadcasts over samples; a leading N gives per-sample, i.e. conditional,
    parameters): ``weight_logits`` (1|N, M), ``means`` (1|N, M, d), ``log_scales`` (1|N, 1|M, d),
    ``tril`` (1|N, M, d, d) or None (diagonal precision). Only the strictly lower part of ``tril``
    is used, as ``torch.tril(tri, diagonal=-1)`` in the official code.
    """
    dim = x.shape[-1]
    z = (x[:, None, :] - means) * log_scales.exp()  # diag(exp(l)) (x - a): (N, M, d)
    if tril is not None:
        lower = torch.tril(tril, diagonal=-1)
        z = z + torch.einsum("...mij,...mj->...mi", lower, z)  # (I + L) diag(exp(l)) (x - a)
    log_det = log_scales.sum(-1)  # log|det A_m|, because I + L has a unit diagonal
    log_components = torch.log_softmax(weight_logits, dim=-1) + log_det - 0.5 * (z * z).sum(-1)
    return torch.logsumexp(log_components, dim=-1) - 0.5 * dim * math.log(2 * math.pi)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """float64 stays float64 (tests, references); anything narrower becomes float32."""
    return x if x.dtype == torch.float64 else x.float()


class MarginalKNIFE(nn.Module):
    """KNIFE entropy h(X): a learnable M-component Gaussian mixture; ``forward(x)`` -> h estimate.

    Pichler et al., "A Differential Entropy Estimator for Training Neural Networks", ICML 2022;
    official ``MargKernel`` (g-pichler/knife, ``da_experiments/estimators/knife.py``). The
    estimate -mean log p(x) is also the loss that fits the mixture. Means are placed at M data
    samples (the paper's "kernel samples"): pass ``init_samples`` or let the first call to
    :meth:`initialize` / :meth:`forward` take the first M rows of its batch (rows are reused
    cyclically when the batch is smaller than M). ``initialized`` is a buffer, so a restored
    checkpoint does not re-initialise.

    Options mirror the official flags: ``learn_means`` (optimize_mu), ``learn_weights``
    (average='var'; else uniform fixed weights), ``per_mode_scales`` (cov_diagonal='var'; else one
    diagonal shared by all modes), ``full_covariance`` (cov_off_diagonal='var'), ``use_tanh``
    (log-scales squashed to [-1, 1]), ``init_std`` (log-scales and L start at init_std * randn,
    i.e. unit precision). ``scale_init_from_data`` is ours, not official: it starts every log-scale
    at -log(std of the data per dimension), for inputs far from unit scale (embeddings).

    Args:
        dim: width d of x.
        num_modes: mixture components M.
        learn_means: train the means.
        learn_weights: train the mixture weights (else uniform).
        per_mode_scales: one diagonal precision scale per mode (else shared).
        full_covariance: learn the strictly lower-triangular precision factor L.
        use_tanh: squash the log-scales to [-1, 1].
        init_std: scale of the random initial log-scales and L.
        scale_init_from_data: start the log-scales at -log(std) of the first batch.
        init_samples: place the means now (else at the first batch seen).
    """

    def __init__(
        self,
        dim: int,
        num_modes: int = 128,
        *,
        learn_means: bool = True,
        learn_weights: bool = True,
        per_mode_scales: bool = True,
        full_covariance: bool = True,
        use_tanh: bool = False,
        init_std: float = 1e-2,
        scale_init_from_data: bool = False,
        init_samples: torch.Tensor | None = None,
    ):
        super().__init__()
        self.dim, self.num_modes = dim, num_modes
        self.use_tanh, self.init_std = use_tanh, init_std
        self.scale_init_from_data = scale_init_from_data
        self.means = nn.Parameter(init_std * torch.randn(1, num_modes, dim), learn_means)
        modes = num_modes if per_mode_scales else 1
        self.log_scales = nn.Parameter(init_std * torch.randn(1, modes, dim))
        self.tril = (
            nn.Parameter(init_std * torch.randn(1, num_modes, dim, dim))
            if full_covariance
            else None
        )
        self.weight_logits = nn.Parameter(torch.zeros(1, num_modes), learn_weights)
        self.register_buffer("initialized", torch.tensor(False))
        if init_samples is not None:
            self.initialize(init_samples)

    @torch.no_grad()
    def initialize(self, samples: torch.Tensor) -> None:
        """Means <- the first M rows of ``samples`` (cyclically); optionally data-scaled scales."""
        samples = samples.detach().to(self.means)
        index = torch.arange(self.num_modes, device=samples.device) % samples.shape[0]
        self.means.copy_(samples[index][None])
        if self.scale_init_from_data and samples.shape[0] > 1:
            std = samples.std(dim=0).clamp_min(1e-6)
            noise = self.init_std * torch.randn_like(self.log_scales)
            self.log_scales.copy_(noise - std.log())
        self.initialized.fill_(True)

    def effective_log_scales(self) -> torch.Tensor:
        return self.log_scales.tanh() if self.use_tanh else self.log_scales

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n), (N, d) -> (N,), in float32 (float64 if x and the parameters are)."""
        if not bool(self.initialized):
            self.initialize(x)
        with torch.autocast(x.device.type, enabled=False):
            return knife_log_density(
                as_float(x), self.weight_logits, self.means, self.effective_log_scales(), self.tril
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Entropy estimate h(X) = -mean log p(x): also the loss that fits the mixture."""
        return -self.log_density(x).mean()


def conditioning_net(
    in_dim: int, hidden_dim: int, out_dim: int, layers: int = 1, layer_norm: bool = True
) -> nn.Sequential:
    """Official ``FF`` with the domain-adaptation config (da_experiments/config/knife.yaml:
    LayerNorm on, ReLU, no residual): [LayerNorm -> Linear -> ReLU] x layers -> Linear.
    The official code sizes the hidden layer as the modelled variable's dimension.
    Turn ``layer_norm`` off for inputs of width 1 or 2: LayerNorm maps those to constants or
    signs and erases the magnitude the density should depend on."""
    blocks, width = [], in_dim
    for _ in range(layers):
        blocks += [nn.LayerNorm(width)] if layer_norm else []
        blocks += [nn.Linear(width, hidden_dim), nn.ReLU()]
        width = hidden_dim
    return nn.Sequential(*blocks, nn.Linear(width, out_dim))


class ConditionalKNIFE(nn.Module):
    """Conditional KNIFE h(Y | X) with p(y | x) = sum_m w_m(x) N(y; a_m(x), A_m(x)).

    Pichler et al., ICML 2022; official ``CondKernel`` (g-pichler/knife,
    ``da_experiments/estimators/knife.py``). One small network of the conditioning variable x
    per parameter: weight logits (M), means (M * d), log-scales (M * d) and, with
    ``full_covariance``, L (M * d * d). ``forward(y, x)`` -> -mean log p(y | x).

    Args:
        cond_dim: width of x.
        dim: width d of y.
        num_modes: mixture components M.
        hidden_dim: width of the conditioning networks (default d, as the official code).
        layers: hidden layers of each network.
        layer_norm: LayerNorm before each layer (the official config; off for inputs of width
            1 or 2).
        full_covariance: also predict L.
        use_tanh: squash the log-scales to [-1, 1].
    """

    def __init__(
        self,
        cond_dim: int,
        dim: int,
        num_modes: int = 128,
        *,
        hidden_dim: int | None = None,
        layers: int = 1,
        layer_norm: bool = True,
        full_covariance: bool = True,
        use_tanh: bool = False,
    ):
        super().__init__()
        self.dim, self.num_modes, self.use_tanh = dim, num_modes, use_tanh
        hidden = hidden_dim or dim

        def net(out):
            return conditioning_net(cond_dim, hidden, out, layers, layer_norm)

        self.weight_net, self.mean_net, self.log_scale_net = (
            net(num_modes),
            net(num_modes * dim),
            net(num_modes * dim),
        )
        self.tril_net = net(num_modes * dim * dim) if full_covariance else None

    def log_density(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(y_n | x_n), (N, d) and (N, cond_dim) -> (N,)."""
        with torch.autocast(y.device.type, enabled=False):
            y, x = as_float(y), as_float(x).to(self.weight_net[-1].weight.dtype)
            n, m, d = y.shape[0], self.num_modes, self.dim
            log_scales = self.log_scale_net(x).view(n, m, d)
            if self.use_tanh:
                log_scales = log_scales.tanh()
            tril = None if self.tril_net is None else self.tril_net(x).view(n, m, d, d)
            return knife_log_density(
                y.to(log_scales.dtype),
                self.weight_net(x),
                self.mean_net(x).view(n, m, d),
                log_scales,
                tril,
            )

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Conditional entropy estimate h(Y | X) = -mean log p(y | x) (also its fitting loss)."""
        return -self.log_density(y, x).mean()


class KnifeMI(NamedTuple):
    mi: torch.Tensor  # h(Y) - h(Y | X)
    fit_loss: torch.Tensor  # h(Y) + h(Y | X): what the estimator's own optimizer minimises
    marginal_entropy: torch.Tensor
    conditional_entropy: torch.Tensor


class KNIFE(nn.Module):
    """KNIFE mutual information I(X; Y) = h(Y) - h(Y | X); ``forward(x, y)`` -> ``KnifeMI``.

    Pichler et al., ICML 2022; official ``KNIFE.forward(z_c, z_d)`` (g-pichler/knife,
    ``da_experiments/estimators/knife.py``: z_c conditions, z_d is modelled). Put the variable
    whose differential entropy makes sense (continuous) in ``y``; ``x`` may be anything a network
    reads, e.g. one-hot labels. The result holds ``mi``, ``fit_loss`` = h(Y) + h(Y | X) (what
    the estimator's own optimizer minimises), ``marginal_entropy`` and ``conditional_entropy``.

    Args:
        x_dim: width of x.
        y_dim: width of y.
        marginal_modes: components of the h(Y) mixture.
        conditional_modes: components of the h(Y | X) mixture.
        full_covariance: full precision factors for h(Y).
        conditional_full_covariance: the same for h(Y | X) (default: ``full_covariance``).
        use_tanh: squash the log-scales to [-1, 1].
        learn_weights: train the marginal mixture's weights.
        init_std: scale of the random initial parameters.
        scale_init_from_data: start the marginal log-scales from the data's std.
        hidden_dim: width of the conditioning networks.
        layers: their hidden layers.
        layer_norm: LayerNorm in them.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        marginal_modes: int = 128,
        conditional_modes: int = 128,
        *,
        full_covariance: bool = True,
        conditional_full_covariance: bool | None = None,
        use_tanh: bool = False,
        learn_weights: bool = True,
        init_std: float = 1e-2,
        scale_init_from_data: bool = False,
        hidden_dim: int | None = None,
        layers: int = 1,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.marginal = MarginalKNIFE(
            y_dim,
            marginal_modes,
            learn_weights=learn_weights,
            full_covariance=full_covariance,
            use_tanh=use_tanh,
            init_std=init_std,
            scale_init_from_data=scale_init_from_data,
        )
        self.conditional = ConditionalKNIFE(
            x_dim,
            y_dim,
            conditional_modes,
            hidden_dim=hidden_dim,
            layers=layers,
            layer_norm=layer_norm,
            full_covariance=(
                full_covariance
                if conditional_full_covariance is None
                else conditional_full_covariance
            ),
            use_tanh=use_tanh,
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> KnifeMI:
        h_y = self.marginal(y)
        h_y_given_x = self.conditional(y, x)
        return KnifeMI(h_y - h_y_given_x, h_y + h_y_given_x, h_y, h_y_given_x)


class JointKnifeMI(NamedTuple):
    mi: torch.Tensor  # |h(X) + h(Y) - h(X, Y)|
    fit_loss: torch.Tensor  # h(X) + h(Y) + h(X, Y)
    h_x: torch.Tensor
    h_y: torch.Tensor
    h_xy: torch.Tensor


class JointKNIFE(nn.Module):
    """KNIFE MI from three entropies, |h(X) + h(Y) - h(X, Y)|; ``forward(x, y)`` -> JointKnifeMI.

    Pichler et al., ICML 2022; the joint variant of the official Gaussian-MI experiment
    (g-pichler/knife, ``synthetic_experiments/mi_estimators.py``: ``MIKernelEstimator(use_joint=
    True)``), three marginal KNIFEs. Official settings (mi_estimators.py main): K = batch_size //
    6 modes each, full precisions.
    Differences, all in the official code's *parametrisation* rather than the model family:
    it stores the precision diagonal itself (init 1) where we store its log (init ~0, same
    start), draws means from U[0, 1) where we place them at the first batch's samples. Its
    ``average='fixed'`` argument never reaches the kernels, so their weights are learned:
    ``learn_weights=True`` reproduces that.

    ``per_sample_abs``: the official ``MultiGaussKernelEE.forward`` averages |-log p(x_n)| (each
    entropy term, in the estimate and in the fitting loss alike), then
    ``MIKernelEstimator(use_joint=True)`` takes |h(X) + h(Y) - h(X, Y)|. The two agree unless some
    density exceeds 1 (then |-log p| != -log p). Ours (``False``, the default) averages -log p, a
    proper cross-entropy whose minimum is the entropy, and keeps only the final |.|: the per-sample
    |.| pushes densities above 1 back down, which biases small or negative entropies upward.

    Args:
        x_dim: width of x.
        y_dim: width of y.
        num_modes: components of each mixture.
        per_sample_abs: the official per-sample |-log p| (see above).
        **kwargs: passed to each :class:`MarginalKNIFE`.
    """

    def __init__(
        self, x_dim: int, y_dim: int, num_modes: int = 21, per_sample_abs: bool = False, **kwargs
    ):
        super().__init__()
        self.x_dim = x_dim
        self.per_sample_abs = per_sample_abs
        self.kernel_x = MarginalKNIFE(x_dim, num_modes, **kwargs)
        self.kernel_y = MarginalKNIFE(y_dim, num_modes, **kwargs)
        self.kernel_xy = MarginalKNIFE(x_dim + y_dim, num_modes, **kwargs)

    def _entropy(self, kernel: MarginalKNIFE, v: torch.Tensor) -> torch.Tensor:
        return (-kernel.log_density(v)).abs().mean() if self.per_sample_abs else kernel(v)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> JointKnifeMI:
        h_x, h_y = self._entropy(self.kernel_x, x), self._entropy(self.kernel_y, y)
        h_xy = self._entropy(self.kernel_xy, torch.cat([x, y], dim=1))
        return JointKnifeMI((h_x + h_y - h_xy).abs(), h_x + h_y + h_xy, h_x, h_y, h_xy)
