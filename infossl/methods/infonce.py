"""``--method infonce``: SimCLR's NT-Xent with negatives gathered from every process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from infossl.config_schema import Gt
from infossl.losses.infonce import InfoNCELoss
from infossl.methods.base import BaseMethod


@dataclass
class InfoNCELossRules:
    temperature: Annotated[float, Gt(0)]


class InfoNCE(BaseMethod):
    LOSS_RULES = InfoNCELossRules

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        self.criterion = InfoNCELoss(temperature=cfg["loss"]["temperature"])

    def loss_terms(self, features, embeddings, labels):
        z1, z2 = embeddings
        return self.criterion(z1, z2)
