"""``--method flo``: FLO (Guo et al., NeurIPS 2022) between two views.

Bilinear (cosine / temperature) critic on the two views' embeddings with in-batch negatives
gathered from every process, and a u head on the pair that learns the negative pointwise MI;
the u head's parameters train with the encoder (they belong to the loss module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from infossl.config_schema import Count, Ge, Gt
from infossl.losses.ssl_mi import FLOSSLLoss
from infossl.methods.base import BaseMethod


@dataclass
class FLOLossRules:
    temperature: Annotated[float, Gt(0)]
    hidden_dim: Count
    reg_weight: Annotated[float, Ge(0)]
    reg_distance: Literal["squared", "absolute"]  # infossl/losses/mi_bounds.py REG_DISTANCES


class FLO(BaseMethod):
    """``--method flo``: the FLO bound between two views (Guo et al., NeurIPS 2022).

    qingguo666/FLO (``Jupyter-Notebook/FLO-BiLinear-code-snippet.ipynb``: ``LossFLO``); see
    :class:`infossl.losses.FLOSSLLoss`.

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    LOSS_RULES = FLOLossRules

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        self.criterion = FLOSSLLoss(dim=cfg["projector"]["output_dim"], **cfg["loss"])

    def loss_terms(self, features, embeddings, labels):
        return self.criterion(*embeddings)
