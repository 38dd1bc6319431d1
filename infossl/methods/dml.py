"""``--method dml-ce`` and ``--method dml-pairwise``: supervised deep metric learning.

dml-ce follows the official code of Boudiaf, Rony et al. (ECCV 2020, jeromerony/dml_cross_entropy,
``models/base_model.py``): backbone features -> optional BatchNorm1d(affine=False) (``loss.
feature_norm: batch``, their Cars/SOP/In-Shop setting) = the retrieval embedding -> Dropout ->
a zero-initialised Linear classifier, trained with the eps / (C - 1) smoothed cross-entropy.
``train/mi_lower_bound`` logs H(Y) - CE, the lower bound on I(Z; Y) the paper's MI view says the
cross-entropy maximises (H(Y) of the training labels, CE unsmoothed, on the training batch).

dml-pairwise trains the same embedding with a pytorch-metric-learning loss (losses/pairwise.py).

Both validate on the held-out classes (data.class_split) with Recall@1 (cosine and L2),
logged as ``val/recall_at_1_cosine`` and ``val/recall_at_1_l2``. These are logged, not used for
model selection: the official code keeps the epoch with the best test Recall@1, we keep the last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn as nn

from infossl.config_schema import Ge, Gt, Lt, Prob
from infossl.distributed import gather_cat, gather_cat_no_grad
from infossl.errors import ConfigError
from infossl.eval.retrieval import recall_at_k
from infossl.losses.dml_ce import (
    label_entropy,
    mi_lower_bound,
    smooth_cross_entropy,
    uniform_label_entropy,
)
from infossl.losses.pairwise import NAMES as PAIRWISE_NAMES
from infossl.losses.pairwise import PairwiseLoss
from infossl.methods.base import BaseMethod


@dataclass
class DMLLossRules:
    feature_norm: Literal["none", "batch"]
    embedding_dim: Annotated[int, Ge(0)]


@dataclass
class DMLCrossEntropyLossRules(DMLLossRules):
    label_smoothing: Annotated[Prob, Lt(1)]
    dropout: Annotated[Prob, Lt(1)]


# pytorch-metric-learning's arguments of each pairwise loss (infossl/losses/pairwise.py).
@dataclass
class Contrastive:
    pos_margin: float
    neg_margin: float


@dataclass
class MultiSimilarity:
    alpha: Annotated[float, Gt(0)]
    beta: Annotated[float, Gt(0)]
    base: float
    miner_epsilon: Annotated[float, Ge(0)]


@dataclass
class Triplet:
    margin: Annotated[float, Ge(0)]
    mining: Literal["semihard", "hard", "easy", "all"]


@dataclass
class SNCA:
    temperature: Annotated[float, Gt(0)]


@dataclass
class DMLPairwiseLossRules(DMLLossRules):
    name: Literal["contrastive", "multi_similarity", "triplet", "snca"]
    contrastive: Contrastive
    multi_similarity: MultiSimilarity
    triplet: Triplet
    snca: SNCA


def embedding_head(loss_cfg: dict, feature_dim: int) -> tuple[nn.Module, int]:
    """backbone features -> retrieval embedding: optional Linear, optional BatchNorm1d(affine=
    False). Shared by training and eval (infossl/eval/retrieval_protocol.py); ``feature_norm``
    is checked by config.validate."""
    norm = loss_cfg["feature_norm"]
    layers: list[nn.Module] = []
    dim = feature_dim
    if loss_cfg["embedding_dim"] > 0:
        layers.append(nn.Linear(feature_dim, loss_cfg["embedding_dim"]))
        dim = loss_cfg["embedding_dim"]
    if norm == "batch":
        layers.append(nn.BatchNorm1d(dim, affine=False))
    return (nn.Sequential(*layers) if layers else nn.Identity()), dim


class DMLMethod(BaseMethod):
    """Shared by the metric-learning methods: one view, the embedding head as the projector,
    no online probe (the labels train the method itself), Recall@1 on the held-out classes."""

    LOSS_RULES = DMLLossRules

    @classmethod
    def check_config(cls, cfg: dict, num_classes: int | None) -> None:
        super().check_config(cfg, num_classes)
        if len(cfg["data"]["views"]) != 1:
            raise ConfigError(
                f"metric learning trains on one augmented view per image, and "
                f"data.augmentation={cfg['data']['augmentation']} makes "
                f"{len(cfg['data']['views'])}; use a single-view augmentation (e.g. dml_digits, "
                "dml_cub, dml_cars)"
            )

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, None)  # no online probe: the method is the classifier
        self.save_hyperparameters({"cfg": cfg, "num_classes": num_classes})
        self.num_classes = num_classes
        self._val_embeddings: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def build_projector(self) -> nn.Module:
        head, self.embedding_dim = embedding_head(self.cfg["loss"], self.feature_dim)
        return head

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(images))

    def validation_step(self, batch, batch_idx):
        self._val_embeddings.append(self.embed(batch[0]).float())
        self._val_labels.append(batch[1])

    def on_validation_epoch_end(self):
        if not self._val_embeddings:
            return
        z = gather_cat_no_grad(torch.cat(self._val_embeddings))
        y = gather_cat_no_grad(torch.cat(self._val_labels))
        self._val_embeddings.clear()
        self._val_labels.clear()
        if len(y) < 2:
            return
        for distance in ("cosine", "l2"):
            r1 = recall_at_k(z.cpu(), y.cpu(), (1,), distance)[1]
            self.log(
                f"val/recall_at_1_{distance}", r1, prog_bar=distance == "cosine", sync_dist=False
            )


class DMLCrossEntropy(DMLMethod):
    """``--method dml-ce``: metric learning with the smoothed cross-entropy (Boudiaf, Rony et
    al., ECCV 2020).

    jeromerony/dml_cross_entropy (``models/base_model.py``, ``utils/utils.py:
    SmoothCrossEntropy``); logs the MI lower bound H(Y) - CE as ``train/mi_lower_bound``.

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    LOSS_RULES = DMLCrossEntropyLossRules

    @classmethod
    def check_config(cls, cfg: dict, num_classes: int | None) -> None:
        super().check_config(cfg, num_classes)
        if not num_classes or num_classes < 2:
            raise ConfigError("dml-ce needs a labelled dataset with at least 2 training classes")

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        loss = cfg["loss"]
        linear = nn.Linear(self.embedding_dim, num_classes)
        # Zero-initialised classifier (official models/base_model.py): the first steps see
        # uniform predictions, so the randomly initialised layer cannot push features anywhere.
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        self.classifier = nn.Sequential(nn.Dropout(loss["dropout"]), linear)
        self.eps = loss["label_smoothing"]
        self.h_y = uniform_label_entropy(num_classes)

    def on_fit_start(self):
        super().on_fit_start()
        datamodule = getattr(self.trainer, "datamodule", None)
        counts = datamodule.train_label_counts() if datamodule is not None else None
        if counts is not None and int(counts.sum()) > 0:
            self.h_y = label_entropy(counts)

    def loss_terms(self, features, embeddings, labels):
        logits = self.classifier(embeddings[0])
        loss = smooth_cross_entropy(logits, labels, self.eps)
        with torch.no_grad():
            bound = mi_lower_bound(logits, labels, self.h_y)
            accuracy = (logits.argmax(1) == labels).float().mean()
        return {
            "loss": loss,
            "mi_lower_bound": bound,
            "label_entropy": torch.tensor(self.h_y),
            "train_top1": accuracy,
        }


class DMLPairwise(DMLMethod):
    """``--method dml-pairwise``: a pairwise metric-learning loss from pytorch-metric-learning.

    Contrastive, multi-similarity, triplet or SNCA on the global batch; see
    :class:`infossl.losses.PairwiseLoss`.

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    LOSS_RULES = DMLPairwiseLossRules

    @classmethod
    def check_config(cls, cfg: dict, num_classes: int | None) -> None:
        name = cfg["loss"]["name"]
        if name not in PAIRWISE_NAMES and str(name).lower() == "pce":
            raise ConfigError(
                "the paper's pairwise cross-entropy (loss.name=pce) is not implemented: its "
                "exact expression could not be verified (README 'Metric learning'); use one of "
                + ", ".join(PAIRWISE_NAMES)
            )
        super().check_config(cfg, num_classes)

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__(cfg, num_classes)
        self.criterion = PairwiseLoss(cfg["loss"])

    def loss_terms(self, features, embeddings, labels):
        # The global batch (every process's embeddings, with gradients) as pairs and negatives.
        return {"loss": self.criterion(gather_cat(embeddings[0]), gather_cat_no_grad(labels))}
