"""``--method remine``: a regularized MI bound between two views (Choi & Lee, UAI 2022).

``loss.estimator`` in {dv, mine, smile, infonce, nwj, tuba, js}; ``loss.reg_weight`` = 0 gives the
unregularized loss. Critic T(x1, x2) = <f(x1), f(x2)>, as ReMINE's contrastive benchmark.
Logs ``train/mi_estimate`` and the two terms whose parallel drift ReMINE diagnoses: the joint
mean E_P[T] (``train/joint_term``) and the log-partition log E_Q[e^T] (``train/log_partition``).

The defaults (``configs/methods/remine.yaml``) are the official ReMINE semantics of
Siyeong-Lee/Deconstructing-MINE ``experiments_self_contrastive.py``: ``dv`` is its ``remine``
(in-batch DV + regularizer, no moving average); ``smile`` its ``resmile_t10`` (tau = 10, trained
on the clipped DV value, joint term clipped too); ``nwj`` / ``tuba`` with the regularizer its
``renwj_t10`` / ``retuba_t10`` (scores clipped to [-10, 10] inside the value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from infossl.config_schema import Ge, Gt
from infossl.losses.ssl_mi import ReMINESSLLoss
from infossl.methods.base import BaseMethod

SHARED_KEYS = ("estimator", "reg_weight", "reg_target", "reg_distance", "temperature", "normalize")


def estimator_kwargs(loss: dict) -> dict:
    """The ``loss.*`` keys the chosen estimator reads, renamed to its keyword arguments."""
    name = loss["estimator"]
    if name == "smile":
        return {
            "clip": loss["smile_clip"],
            "objective": loss["smile_objective"],
            "clip_joint": loss["smile_clip_joint"],
        }
    if name in ("nwj", "tuba"):
        # Official ReNWJ / ReTUBA clip; their unregularized nwj / tuba do not.
        return {"clip": loss["reg_clip"] if loss["reg_weight"] != 0.0 else None}
    if name == "mine":
        return {"momentum": loss["mine_momentum"]}
    return {}


@dataclass
class ReMINELossRules:
    # infossl/losses/ssl_mi.py ESTIMATORS (a test checks the two lists agree)
    estimator: Literal["dv", "mine", "smile", "infonce", "nwj", "tuba", "js"]
    reg_weight: Annotated[float, Ge(0)]
    reg_distance: Literal["squared", "absolute"]
    temperature: Annotated[float, Gt(0)]


class ReMINE(BaseMethod):
    """``--method remine``: a (ReMINE-regularized) MI bound between two views (Choi & Lee, UAI
    2022).

    Siyeong-Lee/Deconstructing-MINE (``experiments_self_contrastive.py``); see
    :class:`infossl.losses.ReMINESSLLoss`.

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    LOSS_RULES = ReMINELossRules

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        loss = dict(cfg["loss"])
        shared = {k: loss[k] for k in SHARED_KEYS}
        self.criterion = ReMINESSLLoss(**shared, **estimator_kwargs(loss))

    def loss_terms(self, features, embeddings, labels):
        return self.criterion(*embeddings)

    def mi_ceiling(self, global_batch: int) -> float | None:
        # InfoNCE on the N x N score matrix is capped at log N; DV, MINE, SMILE, NWJ, TUBA and
        # JS have no such cap (Poole et al. 2019), so no ceiling is drawn for them.
        return math.log(global_batch) if self.criterion.estimator == "infonce" else None
