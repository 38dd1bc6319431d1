"""MI bounds as self-supervised losses on two views, with negatives from every process.

Each process scores its n local rows (view-1 embeddings) against the N = world * n gathered view-2
embeddings; row i's positive is column ``rank * n + i``. The bounds need only per-row statistics
(``mi_bounds.RowStats``: diagonal score, off-diagonal log-sum-exp, softplus sum), so those n-vectors
are gathered with ``gather_cat`` and every process then evaluates the *same* global loss as one
process would on the whole batch. Gradient convention (``tests/test_distributed.py``): each
process's gradient w.r.t. its local rows is world_size x the 1-process gradient, which DDP's
averaging turns back into exactly the 1-process gradient.

Like the official codes, this uses view 1 as rows only (ReMINE's ``_masked_dot_products`` scores
one set of embeddings; FLO's ``LossFLO`` takes ``feat1 @ feat2.T``); symmetrise in the method if
wanted by calling twice with the views swapped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infossl.distributed import gather_cat, rank
from infossl.losses.flo import flo_from_rows, flo_per_row
from infossl.losses.mi_bounds import ESTIMATORS, check_options, row_statistics, stats_clip


def _local_scores(z1: torch.Tensor, z2: torch.Tensor, temperature: float, normalize: bool):
    """(n, N) scores of local view-1 rows vs gathered view-2, in float32+ outside autocast."""
    with torch.autocast(device_type=z1.device.type, enabled=False):
        dtype = torch.promote_types(z1.dtype, torch.float32)
        a, b = z1.to(dtype), gather_cat(z2).to(dtype)
        if normalize:
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        return a @ b.T / temperature, a


def remine_ssl_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    estimator: str = "dv",
    reg_weight: float = 0.0,
    reg_target: float = 0.0,
    reg_distance: str = "squared",
    temperature: float = 1.0,
    normalize: bool = False,
    **estimator_kwargs,
) -> dict[str, torch.Tensor]:
    """ReMINE-regularized MI bound between two views with critic T(x1, x2) = <f(x1), f(x2)> / t.

    Choi & Lee, "Combating the Instability of Mutual Information-based Losses via
    Regularization", UAI 2022; Siyeong-Lee/Deconstructing-MINE,
    ``experiments_self_contrastive.py``. Defaults follow ReMINE's contrastive benchmark there: the
    raw inner product of *unnormalized* 512-d ResNet features, scale 1 (``torch.matmul(logits,
    logits.T)``). ``normalize=True`` with a temperature gives the SimCLR-style cosine critic.
    The default estimator ``dv`` with ``reg_weight > 0`` is the official ReMINE (in-batch DV plus
    the regularizer, no moving average: ``experiments_self_contrastive.py: remine``).
    ``estimator_kwargs`` go to the estimator: ``clip``, ``objective``, ``clip_joint`` (smile),
    ``clip`` (nwj, tuba), ``ema`` and ``momentum`` (mine: pass the state returned as ``state`` at
    the previous step, or use ``ReMINESSLLoss``'s buffer).

    Args:
        z1: (n, D) view-1 embeddings on this process (the rows of the score matrix).
        z2: (n, D) view-2 embeddings; row i is the positive of ``z1[i]``.
        estimator: one of dv, mine, smile, infonce, nwj, tuba, js (``mi_bounds.ESTIMATORS``).
        reg_weight: lambda of the ReMINE regularizer lambda * d(log E_Q[e^T], C); 0 turns it off.
        reg_target: its target C.
        reg_distance: d, "squared" (ReMINE's) or "absolute".
        temperature: t of the critic.
        normalize: L2-normalise the embeddings first (cosine critic).
        **estimator_kwargs: passed to the estimator, as above.

    Returns:
        dict of ``loss`` (with gradient), ``mi_estimate`` (the unregularized bound, detached),
        ``joint_term`` E_P[T], ``log_partition`` (the regularized term) and, for mine, ``state``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {sorted(ESTIMATORS)}")
    scores, _ = _local_scores(z1, z2, temperature, normalize)
    clip = stats_clip(estimator, estimator_kwargs)
    local = row_statistics(scores, diag_offset=rank() * z1.shape[0], clip=clip)
    stats = local.map(gather_cat)  # statistics of the full N x N matrix, on every process
    out = ESTIMATORS[estimator](
        stats,
        reg_weight=reg_weight,
        reg_target=reg_target,
        reg_distance=reg_distance,
        **estimator_kwargs,
    )
    result = {
        "loss": out.loss,
        "mi_estimate": out.mi,
        "joint_term": out.joint_term,
        "log_partition": out.log_partition,
    }
    if out.state is not None:
        result["state"] = out.state
    return result


def flo_ssl_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    u_head: torch.nn.Module,
    temperature: float | torch.Tensor = 0.1,
    normalize: bool = True,
    reg_weight: float = 0.0,
    reg_target: float = 0.0,
    reg_distance: str = "squared",
) -> dict[str, torch.Tensor]:
    """FLO between two views: critic g_ij = <h1_i, h2_j> / t and u_i = u_head([h1_i; h2_i]).

    Guo et al., "Tight Mutual Information Estimation With Contrastive Fenchel-Legendre
    Optimization", NeurIPS 2022; qingguo666/FLO, ``Jupyter-Notebook/FLO-BiLinear-code-snippet
    .ipynb`` (``LossFLO``: u of the (feat1, feat2) pair, in-batch negatives).

    Args:
        z1: (n, D) view-1 embeddings on this process.
        z2: (n, D) view-2 embeddings; row i is the positive of ``z1[i]``.
        u_head: maps the (n, 2D) concatenated pairs to (n,) or (n, 1).
        temperature: t of the critic; may be a learned scalar tensor (the official
            ``BilinearCritic.tau``).
        normalize: unit-norm h (cosine critic).
        reg_weight: weight of the optional ReMINE term on log E_Q[e^g] (it only pins the free
            additive constant of g; the FLO value is invariant to it).
        reg_target: its target.
        reg_distance: "squared" or "absolute".

    Returns:
        dict of ``loss`` (with gradient), ``mi_estimate`` (the FLO bound), ``joint_term``,
        ``log_partition`` and ``neg_pmi`` (mean u, about -I at the optimum), all but ``loss``
        detached.
    """
    n = z1.shape[0]
    scores, h1 = _local_scores(z1, z2, temperature, normalize)
    h2 = F.normalize(z2.to(h1.dtype), dim=1) if normalize else z2.to(h1.dtype)
    u_local = u_head(torch.cat([h1, h2], dim=1)).reshape(-1)
    local = row_statistics(scores, diag_offset=rank() * n)
    per_row = gather_cat(flo_per_row(local, u_local))
    out = flo_from_rows(
        per_row, local.map(gather_cat), gather_cat(u_local), reg_weight, reg_target, reg_distance
    )
    return {
        "loss": out["loss"],
        "mi_estimate": out["mi"],
        "joint_term": out["joint_term"],
        "log_partition": out["log_partition"],
        "neg_pmi": out["neg_pmi"],
    }


class ReMINESSLLoss(torch.nn.Module):
    """:func:`remine_ssl_loss` as a module: ``forward(z1, z2)`` returns its dict (no ``state``).

    ReMINE (Choi & Lee, UAI 2022; Siyeong-Lee/Deconstructing-MINE,
    ``experiments_self_contrastive.py``). The module keeps MINE's moving average as the float64
    buffer ``ema`` (checkpointed, updated in training mode only; identical on every process since
    it is computed from gathered statistics).

    Args:
        estimator: one of dv, mine, smile, infonce, nwj, tuba, js; dv with ``reg_weight > 0`` is
            the official ReMINE.
        reg_weight: lambda of the regularizer; 0 gives the unregularized bound.
        reg_target: its target C.
        reg_distance: "squared" or "absolute".
        temperature: t of the critic <f(x1), f(x2)> / t.
        normalize: L2-normalise the embeddings first.
        **estimator_kwargs: the estimator's options (``clip``, ``objective``, ``clip_joint``,
            ``momentum``).
    """

    def __init__(
        self,
        estimator: str = "dv",
        reg_weight: float = 0.0,
        reg_target: float = 0.0,
        reg_distance: str = "squared",
        temperature: float = 1.0,
        normalize: bool = False,
        **estimator_kwargs,
    ):
        super().__init__()
        check_options(estimator, estimator_kwargs)
        self.estimator = estimator
        self.kwargs = dict(
            reg_weight=reg_weight,
            reg_target=reg_target,
            reg_distance=reg_distance,
            temperature=temperature,
            normalize=normalize,
            **estimator_kwargs,
        )
        self.register_buffer("ema", torch.ones((), dtype=torch.float64))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        extra = {"ema": self.ema} if self.estimator == "mine" else {}
        out = remine_ssl_loss(z1, z2, self.estimator, **self.kwargs, **extra)
        if "state" in out and self.training:
            self.ema.copy_(out.pop("state").detach())
        out.pop("state", None)
        return out


class FLOSSLLoss(torch.nn.Module):
    """FLO loss that owns its u head: ``forward(z1, z2)`` is :func:`flo_ssl_loss` with it.

    Guo et al., NeurIPS 2022. The u head is an MLP on [h1; h2] (2 * dim -> hidden -> 1), as the
    official ``LossFLO`` pairs a u network with the bilinear critic. Its parameters must be
    optimized with the encoder's (they are this module's parameters).

    Ours (``configs/methods/flo.yaml``): a fixed temperature 0.1, the SimCLR-style value for a
    cosine critic, and a 512-unit u head. Official (qingguo666/FLO,
    ``Jupyter-Notebook/FLO-BiLinear-code-snippet.ipynb``): ``learn_temperature=True`` with
    ``temperature=1.0`` makes the temperature the learned parameter ``tau`` of its
    ``BilinearCritic`` (init 1, scores ``<h1/sqrt(tau), h2/sqrt(tau)>`` = cosine / tau), and
    ``hidden_dim=128`` is its u network ``MLP(2 * feature_dim, hidden_dim=[128])`` on the unit-norm
    features. Differences left: the notebook's MLPs use Xavier-uniform weights (ours PyTorch's
    default init), and tau is a weight like any other here (weight decay applies; the notebook
    trains with plain Adam).

    Args:
        dim: embedding width D.
        hidden_dim: width of the u head's hidden layer.
        temperature: t of the critic (the initial tau with ``learn_temperature``).
        normalize: unit-norm embeddings (cosine critic).
        reg_weight: weight of the optional term on log E_Q[e^g].
        reg_target: its target.
        reg_distance: "squared" or "absolute".
        learn_temperature: make the temperature the learned parameter ``tau``.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int = 512,
        temperature: float = 0.1,
        normalize: bool = True,
        reg_weight: float = 0.0,
        reg_target: float = 0.0,
        reg_distance: str = "squared",
        learn_temperature: bool = False,
    ):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.u_head = torch.nn.Sequential(
            torch.nn.Linear(2 * dim, hidden_dim), torch.nn.ReLU(), torch.nn.Linear(hidden_dim, 1)
        )
        # The official parameter is tau itself (torch.nn.Parameter(torch.Tensor([tau]))).
        self.tau = (
            torch.nn.Parameter(torch.tensor(float(temperature))) if learn_temperature else None
        )
        self.temperature = temperature
        self.kwargs = dict(
            normalize=normalize,
            reg_weight=reg_weight,
            reg_target=reg_target,
            reg_distance=reg_distance,
        )

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        temperature = self.temperature if self.tau is None else self.tau
        out = flo_ssl_loss(z1, z2, self.u_head, temperature=temperature, **self.kwargs)
        if self.tau is not None:
            out["temperature"] = self.tau.detach()
        return out
