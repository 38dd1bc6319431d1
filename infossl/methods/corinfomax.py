"""``--method corinfomax``: log-det covariance + alignment (Ozsoy et al., NeurIPS 2022).

Projector Linear-ReLU-Linear-ReLU-Linear(bias=False) (official ``CovModel``:
``projector.last_bias: false`` in configs/methods/corinfomax.yaml; the ImageNet-1K variant
``CovModel6`` adds BatchNorm: ``projector.batch_norm: true``). The loss module holds the
four moving averages as float64 buffers, so they are saved in every checkpoint and restored on
resume; under DDP it all-gathers the embeddings so every process sees the global batch and keeps
identical moving averages, as the official code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from infossl.config_schema import Ge, Gt, Lt, Prob
from infossl.losses.corinfomax import CorInfoMaxLoss
from infossl.methods.base import BaseMethod


@dataclass
class CorInfoMaxLossRules:
    alpha: Annotated[float, Ge(0)]
    cov_weight: Annotated[float, Ge(0)]
    la_R: Annotated[Prob, Lt(1)]  # weights of the previous estimates: 1 would never update
    la_mu: Annotated[Prob, Lt(1)]
    eps: Annotated[float, Gt(0)]  # keeps log det(R + eps I) finite for a rank-deficient R
    R_ini: Annotated[float, Gt(0)]


class CorInfoMax(BaseMethod):
    """``--method corinfomax``: log-det covariance + alignment (Ozsoy et al., NeurIPS 2022).

    serdarozsoy/corinfomax-ssl (``CovarianceLossv2`` in ``cifars-tiny/loss.py``, projector
    ``CovModel``); see :class:`infossl.losses.CorInfoMaxLoss`.

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    LOSS_RULES = CorInfoMaxLossRules

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        loss = cfg["loss"]
        self.criterion = CorInfoMaxLoss(
            dim=cfg["projector"]["output_dim"],
            alpha=loss["alpha"],
            la_R=loss["la_R"],
            la_mu=loss["la_mu"],
            eps=loss["eps"],
            R_ini=loss["R_ini"],
            cov_weight=loss["cov_weight"],
            normalize=loss["normalize"],
        )

    def loss_terms(self, features, embeddings, labels):
        z1, z2 = embeddings
        return self.criterion(z1, z2)
