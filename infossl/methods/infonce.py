"""``--method infonce``: SimCLR's NT-Xent with negatives gathered from every process."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from infossl.config_schema import Gt
from infossl.losses.infonce import InfoNCELoss
from infossl.methods.base import BaseMethod


@dataclass
class InfoNCELossRules:
    temperature: Annotated[float, Gt(0)]


class InfoNCE(BaseMethod):
    """``--method infonce``: SimCLR's NT-Xent between two views (Chen et al. 2020).

    google-research/simclr (``objective.py``), negatives gathered from every process as lightly's
    ``NTXentLoss(gather_distributed=True)``; see :class:`infossl.losses.InfoNCELoss`.

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    LOSS_RULES = InfoNCELossRules

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        self.criterion = InfoNCELoss(temperature=cfg["loss"]["temperature"])

    def loss_terms(self, features, embeddings, labels):
        z1, z2 = embeddings
        return self.criterion(z1, z2)

    def mi_ceiling(self, global_batch: int) -> float:
        # NT-Xent: each anchor's positive competes with 2N - 2 negatives, K = 2N - 1.
        return math.log(2 * global_batch - 1)
