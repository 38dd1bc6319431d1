"""The LightningModule every method extends.

backbone -> projector -> the method's loss over all views; an online linear probe on detached
backbone features (its own parameter group, no weight decay) validated as ``val/online_top1``;
SGD, LARS or AdamW with linear warm-up then cosine, stepped every optimizer step; the learning
rate scaled by global batch / 256; no weight decay on biases and norm layers (solo-learn's
``exclude_bias_n_norm``, lightly's ``get_weight_decay_parameters``).

A method subclass implements ``loss_terms`` (and may override ``build_projector``); it owns no
optimizer, logging or probe code.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.models.modules.heads import ProjectionHead
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from lightly.utils.scheduler import CosineWarmupScheduler
from pytorch_lightning.loggers import TensorBoardLogger
from torchmetrics.classification import MulticlassAccuracy

from infossl.backbones import build_backbone
from infossl.callbacks import logging_step
from infossl.config import check_like, method_loss_defaults
from infossl.config_schema import check_mapping
from infossl.distributed import gather_cat, gather_cat_no_grad
from infossl.errors import ConfigError
from infossl.lightning_compat import attached_trainer
from infossl.losses.knife_regularizer import NAMES as KNIFE_NAMES
from infossl.losses.knife_regularizer import KnifeRegularizer
from infossl.reliability.nonfinite import NonFiniteGuard
from infossl.rundir import CHECKPOINT_FORMAT_KEY, CHECKPOINT_FORMAT_VERSION

# Modules trained by their own optimizer (or not at all) and so kept out of the main one.
_OWN_OPTIMIZER = ("online_probe", "regularizers", "val_accuracy")

# An InfoNCE-type estimate cannot exceed log K, K the candidates each positive competes with
# (van den Oord et al. 2018; Poole et al. 2019): logged beside the estimate and drawn
# with it on one TensorBoard chart (the "Custom Scalars" tab).
MI_CEILING_TAG = "train/mi_ceiling_log_k"
MI_CHART_LAYOUT = {
    "MI": {
        "train/mi_estimate vs its ceiling log K": [
            "Multiline",
            ["train/mi_estimate", MI_CEILING_TAG],
        ]
    }
}


def mlp_projector(
    input_dim: int,
    hidden_dim: int,
    output_dim: int,
    num_layers: int,
    batch_norm: bool,
    last_bias: bool,
) -> nn.Module:
    """Linear(-BN)-ReLU blocks then a final Linear, as lightly's ProjectionHead builds them."""
    blocks = []
    dim = input_dim
    for _ in range(num_layers - 1):
        norm = nn.BatchNorm1d(hidden_dim) if batch_norm else None
        blocks.append((dim, hidden_dim, norm, nn.ReLU()))
        dim = hidden_dim
    blocks.append((dim, output_dim, None, None, last_bias))
    return ProjectionHead(blocks)


def build_regularizer(spec: dict, dim: int) -> nn.Module:
    """A training-time regularizer from its config entry (``regularizers: [...]``)."""
    if spec.get("name") in KNIFE_NAMES:
        return KnifeRegularizer(spec, dim)
    raise ValueError(f"unknown regularizer '{spec.get('name')}'; use one of {KNIFE_NAMES}")


class BaseMethod(pl.LightningModule):
    """The LightningModule every method extends: backbone -> projector -> ``loss_terms``.

    Adds an online linear probe on detached features (``val/online_top1``), the optimizer
    (SGD, LARS or AdamW; lr scaled by global batch / 256, Goyal et al. 2017) with a warm-up
    cosine schedule stepped per optimizer step, the config's KNIFE regularizers and the
    non-finite-loss guard. A subclass implements ``loss_terms`` (and may override
    ``build_projector`` and ``mi_ceiling``).

    Args:
        cfg: a resolved config (``infossl.config``: base.yaml < data < method < flags).
        num_classes: classes of the labelled training data (None: unlabelled).
    """

    # Stricter rules (a dataclass in infossl/config_schema.py's vocabulary) for keys of the
    # method's ``loss`` section than their types in configs/methods/<method>.yaml.
    LOSS_RULES: type | None = None

    @classmethod
    def check_config(cls, cfg: dict, num_classes: int | None) -> None:
        """What this method needs of a validated config (infossl.config.validate), checked
        before anything is written: its ``loss`` keys have the types of its YAML defaults (so
        a key added there is checked too) and the ranges of ``LOSS_RULES``."""
        check_like(cfg["loss"], method_loss_defaults(cfg["method"]), "loss")
        if cls.LOSS_RULES is not None:
            check_mapping(cfg["loss"], cls.LOSS_RULES, "loss", partial=True)
        for entry in cfg["regularizers"]:
            # nuisance: data is checked against data.nuisance by config.validate
            if entry["name"] != "knife_mi" or entry["nuisance"] != "label":
                continue
            if entry["num_classes"] is None and entry["nuisance_dim"] is None:
                raise ConfigError(
                    "regularizer knife_mi: the nuisance is the batch's labels (nuisance: label) "
                    "and needs num_classes, e.g. {name: knife_mi, nuisance: label, num_classes: 10}"
                )
            if not num_classes:
                raise ConfigError(
                    f"regularizer knife_mi needs labels, and --data {cfg['data']['name']} has "
                    "none here; use a labelled dataset or a knife_entropy term"
                )

    def __init__(self, cfg: dict, num_classes: int | None):
        super().__init__()
        # Plain types only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters({"cfg": cfg, "num_classes": num_classes})
        self.cfg = cfg
        self.num_classes = num_classes
        b = cfg["backbone"]
        self.backbone, self.feature_dim = build_backbone(
            b["name"],
            cfg["data"]["image_size"],
            b["small_images"],
            b["zero_init_residual"],
            b["width"],
            b["pretrained"],
        )
        self.projector = self.build_projector()
        if num_classes:
            self.online_probe = nn.Linear(self.feature_dim, num_classes)
            self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        else:
            self.online_probe = None
        # Extra terms from the config, e.g. a KNIFE entropy of the embeddings; each fits its own
        # estimator with its own optimizer, so it stays out of configure_optimizers.
        self.regularizers = nn.ModuleList(
            build_regularizer(self._regularizer_spec(r), self._regularized_dim(r))
            for r in cfg["regularizers"]
        )
        training = cfg["training"]
        self.nonfinite_guard = NonFiniteGuard(
            training["skip_nonfinite"], inject_at_steps=tuple(training["inject_nan_at_steps"])
        )
        # Set by infossl.speed.apply_to_model (trainer.channels_last): inputs are converted to
        # NHWC to match the weights.
        self.channels_last = False

    def _regularizer_spec(self, spec: dict) -> dict:
        """A ``nuisance: data`` term without num_classes one-hots the dataset's nuisance
        values (data.nuisance_values)."""
        if spec.get("nuisance") == "data" and spec.get("num_classes") is None:
            return {**spec, "num_classes": self.cfg["data"]["nuisance_values"]}
        return spec

    def _regularized_dim(self, spec: dict) -> int:
        on = spec.get("on", "embeddings")
        return self.cfg["projector"]["output_dim"] if on == "embeddings" else self.feature_dim

    # ---- what a method provides -------------------------------------------------------------
    def build_projector(self) -> nn.Module:
        p = self.cfg["projector"]
        return mlp_projector(
            self.feature_dim,
            p["hidden_dim"],
            p["output_dim"],
            p["num_layers"],
            p["batch_norm"],
            p["last_bias"],
        )

    def loss_terms(
        self, features: list[torch.Tensor], embeddings: list[torch.Tensor], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return a dict with ``loss`` and any named terms (logged as ``train/<name>``)."""
        raise NotImplementedError  # pragma: no cover - every method overrides it

    def mi_ceiling(self, global_batch: int) -> float | None:
        """log K, the most ``train/mi_estimate`` can read with ``global_batch`` pairs in the
        gathered batch (InfoNCE-type bounds); None where the estimate has no such cap."""
        return None

    # ---- shared training logic --------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def training_step(self, batch, batch_idx):
        views, labels = batch[0], batch[1]
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        # One forward per view, as solo-learn and the official CorInfoMax code do: BatchNorm
        # statistics are per view (synchronised across processes by SyncBatchNorm).
        features = [self.backbone(v) for v in views]
        embeddings = [self.projector(f) for f in features]
        terms = self.loss_terms(features, embeddings, labels)
        loss = terms["loss"]
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}

        for regularizer in self.regularizers:
            source = embeddings if regularizer.on == "embeddings" else features
            # The global batch, so every process fits an identical estimator (as CorInfoMax).
            nuisance = self._nuisance(regularizer, labels, batch)
            value, reg_logs = regularizer(
                gather_cat(source[0]),
                nuisance=None if nuisance is None else gather_cat_no_grad(nuisance),
            )
            loss = loss + value
            logs.update({f"train/{regularizer.name}/{k}": v for k, v in reg_logs.items()})

        probe_loss = self._online_probe_loss(features[0].detach(), labels, logs)
        loss = self.nonfinite_guard.maybe_inject(loss, self.global_step)
        logs["train/loss"] = loss.detach()
        guard = self.nonfinite_guard
        if guard.syncs_every_step:  # skipping must be decided before backward: one sync
            if guard.check(loss, logs, self.global_step):
                return None  # Lightning skips backward and the optimizer step for this batch
        else:  # stopping: a device-side flag, read in on_train_batch_end at logging steps
            guard.record(loss, logs, self.global_step)
        if logging_step(self.trainer):
            logs["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
            # A Python float from the batch shape: no host sync (gather_cat needs equal shapes).
            ceiling = self.mi_ceiling(views[0].shape[0] * self.trainer.world_size)
            if ceiling is not None:
                logs[MI_CEILING_TAG] = ceiling
            self.log_dict(logs, on_step=True, on_epoch=False)
            self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return loss + probe_loss

    @staticmethod
    def _nuisance(regularizer: nn.Module, labels: torch.Tensor, batch) -> torch.Tensor | None:
        """What a regularizer's ``nuisance`` names: the labels, or the dataset's nuisance that
        the batch carries beside its images (``Batch.nuisance``, data.nuisance)."""
        source = regularizer.nuisance
        if source == "data":
            nuisance = batch[3] if len(batch) > 3 else None
            if nuisance is None:  # config.validate refuses this before anything is written
                raise ValueError("a nuisance: data regularizer needs data.nuisance batches")
            return nuisance
        return labels if source == "label" else None

    def _online_probe_loss(self, features: torch.Tensor, labels: torch.Tensor, logs: dict):
        """Cross-entropy over the labelled samples (label -1: unlabelled, e.g. STL-10's extra
        split). Masked sums rather than ``features[labels >= 0]``: boolean indexing copies the
        count to the host (a sync every step). With no labelled sample the loss is 0."""
        if self.online_probe is None:
            return features.new_zeros(())
        labelled = labels >= 0
        count = labelled.sum().clamp(min=1)
        logits = self.online_probe(features)
        per_sample = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
        probe_loss = (per_sample * labelled).sum() / count
        logs["train/online_probe_loss"] = probe_loss.detach()
        correct = (logits.argmax(1) == labels) & labelled
        logs["train/online_top1"] = correct.sum() / count
        return probe_loss

    def on_fit_start(self):
        # The estimate and its ceiling on one chart (written once per fit, by global rank 0).
        if self.mi_ceiling(self.global_batch_size()) is None:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(MI_CHART_LAYOUT)

    # The non-finite guard's device flag is read where the host waits anyway or must know.
    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.nonfinite_guard.raise_if_recorded()

    def on_train_epoch_end(self):
        self.nonfinite_guard.raise_if_recorded()

    def on_save_checkpoint(self, checkpoint):
        self.nonfinite_guard.raise_if_recorded()  # never save the weights of a NaN update
        checkpoint[CHECKPOINT_FORMAT_KEY] = CHECKPOINT_FORMAT_VERSION

    def on_train_end(self):
        self.nonfinite_guard.raise_if_recorded()

    def validation_step(self, batch, batch_idx):
        images, labels = batch[0], batch[1]
        if self.online_probe is None:
            return
        labelled = labels >= 0
        if labelled.any():
            logits = self.online_probe(self.backbone(images[labelled]))
            self.val_accuracy.update(logits, labels[labelled])

    def on_validation_epoch_end(self):
        if self.online_probe is not None and self.val_accuracy.update_count > 0:
            self.log("val/online_top1", self.val_accuracy.compute(), prog_bar=True)
            self.val_accuracy.reset()

    # ---- optimization -----------------------------------------------------------------------
    def global_batch_size(self) -> int:
        world = self.trainer.world_size if attached_trainer(self) is not None else 1
        return self.cfg["data"]["batch_size"] * world

    def trained_modules(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name not in _OWN_OPTIMIZER]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.cfg["backbone"]["freeze_bn"]:
            # The official DML code's set_bn_eval: ImageNet statistics stay fixed (batches of
            # a few fine-grained classes would corrupt them); the affine weights still train.
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _schedule_lengths(self) -> tuple[int, int]:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        o = self.cfg["optimizer"]
        if o["warmup_steps"] > 0:
            return min(o["warmup_steps"], total), total
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        return min(o["warmup_epochs"] * per_epoch, total), total

    def on_train_start(self):
        # A resumed run restores the scheduler's lengths from the checkpoint; when --epochs was
        # changed on resume, the cosine must span the new length instead.
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.warmup_epochs, scheduler.max_epochs = self._schedule_lengths()

    def configure_optimizers(self):
        o = self.cfg["optimizer"]
        scale = self.global_batch_size() / 256  # linear scaling (Goyal et al. 2017)
        decay, no_decay = get_weight_decay_parameters(self.trained_modules())
        groups = [
            {"name": "decay", "params": decay, "weight_decay": o["weight_decay"]},
            {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
        ]
        if self.online_probe is not None:
            groups.append(
                {
                    "name": "online_probe",
                    "params": list(self.online_probe.parameters()),
                    "weight_decay": 0.0,
                    "lr": o["classifier_lr"] * scale,
                }
            )
        lr = o["lr"] * scale
        name = o["name"]
        if name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=o["momentum"])
        elif name == "lars":
            # lightly's LARS leaves groups with weight_decay 0 out of the trust-ratio scaling:
            # biases, norms and the probe get plain SGD with momentum, as in SimCLR and BYOL.
            optimizer = LARS(groups, lr=lr, momentum=o["momentum"])
        else:  # adamw (the schema allows only these three)
            optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(o["betas"]))

        warmup_steps, total_steps = self._schedule_lengths()
        scheduler = CosineWarmupScheduler(
            optimizer,
            warmup_epochs=warmup_steps,
            max_epochs=total_steps,
            start_value=1.0,
            end_value=o["min_lr"],
            warmup_start_value=o["warmup_start_lr"],
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
