"""Collapse diagnostics during pretraining, in TensorBoard.

Every ``diagnostics.every_n_epochs`` the backbone features and projector embeddings of a fixed
validation subset (two augmented views drawn once) are measured: ``diag/features/<metric>`` and
``diag/embeddings/<metric>`` scalars, the singular-value spectrum as an image, and a console +
TensorBoard-text warning when the *backbone features'* effective rank falls below
``diagnostics.collapse_fraction`` x the rank they can reach (min(feature dimension, samples)).

The warning reads the features, not the projector output: the embeddings of healthy contrastive
runs have a low effective rank by design (the projector absorbs the augmentation-variant
directions, Jing et al., ICLR 2022 "Understanding Dimensional Collapse in Contrastive
Self-supervised Learning"; Bordes et al., TMLR 2023 "Guillotine Regularization"), while the
backbone features are what downstream tasks use. On digits (360 validation samples) the
embeddings of a healthy InfoNCE run measure ~2-10 of 64, its 64-d ResNet-9 features ~24, a
random-init ResNet-18 27.7 of 512 features; a representation collapsed to one point measures 1.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from infossl.eval.diagnostics import collapse_report, is_collapsed, singular_values, spectrum_image
from infossl.losses.knife_regularizer import knife_entropy_diagnostic


class CollapseMonitor(pl.Callback):
    def __init__(
        self,
        every_n_epochs: int,
        num_samples: int,
        collapse_fraction: float,
        knife_entropy: bool = False,
    ):
        self.every_n_epochs = every_n_epochs
        self.knife_entropy = knife_entropy
        self.num_samples = num_samples
        self.collapse_fraction = collapse_fraction
        self.views: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_report: dict[str, float] = {}
        self.collapsed_epochs: list[int] = []

    def setup(self, trainer, pl_module, stage):
        if self.views is None and trainer.datamodule is not None:
            self.views = trainer.datamodule.diagnostic_views(self.num_samples)

    @torch.no_grad()
    def measure(self, pl_module) -> tuple[dict[str, float], dict[str, torch.Tensor], int]:
        """(report, spectra, the rank the features can reach: min(samples, feature dim))."""
        was_training = pl_module.training
        pl_module.eval()  # BatchNorm running statistics, no dropout
        device = pl_module.device
        f1 = pl_module.backbone(self.views[0].to(device)).float()
        f2 = pl_module.backbone(self.views[1].to(device)).float()
        z1 = pl_module.projector(f1).float()
        z2 = pl_module.projector(f2).float()
        pl_module.train(was_training)
        report = collapse_report(f1, z1, embeddings_view2=z2, features_view2=f2)
        if self.knife_entropy:
            # Differential entropy of the embeddings by a freshly fitted KNIFE: falls as the
            # representation collapses (Pichler et al. 2022).
            report["embeddings/knife_entropy"] = knife_entropy_diagnostic(z1)
        spectra = {"features": singular_values(f1), "embeddings": singular_values(z1)}
        return report, spectra, min(f1.shape)

    def on_validation_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch
        if self.views is None or trainer.sanity_checking or (epoch + 1) % self.every_n_epochs:
            return
        if not trainer.is_global_zero:  # every rank holds the same weights; one measures
            return
        report, spectra, reachable = self.measure(pl_module)
        self.last_report = report
        step = trainer.global_step
        logger = trainer.logger
        writer = getattr(logger, "experiment", None)
        if writer is not None:
            for key, value in report.items():
                writer.add_scalar(f"diag/{key}", value, step)
            writer.add_image("diag/spectrum", spectrum_image(spectra), step, dataformats="HWC")
        rank = report["features/effective_rank"]
        if is_collapsed(rank, reachable, self.collapse_fraction):
            self.collapsed_epochs.append(epoch)
            message = (
                f"collapse warning at epoch {epoch} (step {step}): the backbone features' "
                f"effective rank is {rank:.2f}, below {self.collapse_fraction} x {reachable} "
                "(the most they can reach here); the representation is concentrating on few "
                "directions: check val/online_top1 and the loss settings"
            )
            rank_zero_warn(message)
            if writer is not None:
                writer.add_text("diag/warnings", message, step)
