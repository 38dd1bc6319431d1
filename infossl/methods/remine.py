"""``--method remine``: a regularized MI bound between two views (Choi & Lee, UAI 2022).

``loss.estimator`` in {mine, smile, infonce, nwj, tuba, js}; ``loss.reg_weight`` = 0 gives the
unregularized loss. Critic T(x1, x2) = <f(x1), f(x2)>, as ReMINE's contrastive benchmark.
Logs ``train/mi_estimate`` and the two terms whose parallel drift ReMINE diagnoses: the joint
mean E_P[T] (``train/joint_term``) and the log-partition log E_Q[e^T] (``train/log_partition``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from infossl.config_schema import Ge, Gt
from infossl.losses.ssl_mi import ReMINESSLLoss
from infossl.methods.base import BaseMethod


@dataclass
class ReMINELossRules:
    # infossl/losses/ssl_mi.py ESTIMATORS (a test checks the two lists agree)
    estimator: Literal["mine", "smile", "infonce", "nwj", "tuba", "js"]
    reg_weight: Annotated[float, Ge(0)]
    reg_distance: Literal["squared", "absolute"]
    temperature: Annotated[float, Gt(0)]


class ReMINE(BaseMethod):
    LOSS_RULES = ReMINELossRules

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        loss = dict(cfg["loss"])
        self.criterion = ReMINESSLLoss(**loss)

    def loss_terms(self, features, embeddings, labels):
        return self.criterion(*embeddings)
