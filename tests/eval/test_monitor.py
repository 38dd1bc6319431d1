"""CollapseMonitor inside a real Lightning fit: the warning follows the backbone features. A
run whose backbone maps every input to one point is flagged (console warning, TensorBoard text,
recorded epoch); a run with spread features is not, even when its projector output has rank 1
(low-rank embeddings are normal in healthy contrastive runs)."""

import warnings

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from infossl.eval.monitor import CollapseMonitor

DIM = 16  # projector output
FEATURES = 32  # backbone output


class _TinyMethod(pl.LightningModule):
    """backbone -> projector, the two attributes the monitor reads; trains a dummy loss."""

    def __init__(self, constant_backbone: bool, rank_one_projector: bool):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, FEATURES), nn.ReLU())
        self.projector = nn.Linear(FEATURES, DIM)
        if constant_backbone:  # every input maps to the bias: fully collapsed features
            nn.init.zeros_(self.backbone[0].weight)
            nn.init.uniform_(self.backbone[0].bias, 0.5, 1.0)
        if rank_one_projector:  # every embedding on one line through the origin
            with torch.no_grad():
                self.projector.weight.copy_(torch.randn(DIM, 1) @ torch.randn(1, FEATURES))
            nn.init.zeros_(self.projector.bias)

    def training_step(self, batch, batch_idx):
        return self.projector(self.backbone(batch[0])).pow(2).mean() * 0.0

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(tmp_path, constant_backbone: bool, rank_one_projector: bool = False):
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(32, 8)), batch_size=16)
    monitor = CollapseMonitor(every_n_epochs=1, num_samples=256, collapse_fraction=0.25)
    monitor.views = (torch.randn(256, 8), torch.randn(256, 8))  # what diagnostic_views gives
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=pl.loggers.TensorBoardLogger(str(tmp_path), name="", version=""),
        callbacks=[monitor],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(_TinyMethod(constant_backbone, rank_one_projector), data, data)
    return monitor, [str(w.message) for w in caught if "collapse warning" in str(w.message)]


def _text_events(log_dir) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    if "diag/warnings/text_summary" not in acc.Tags()["tensors"]:
        return []
    return [
        e.tensor_proto.string_val[0].decode() for e in acc.Tensors("diag/warnings/text_summary")
    ]


def test_collapsed_features_are_flagged_every_epoch_in_console_and_tensorboard(tmp_path):
    monitor, messages = _fit(tmp_path, constant_backbone=True)
    # Identical rows: one non-zero singular value, so RankMe's effective rank is exactly 1.
    assert abs(monitor.last_report["features/effective_rank"] - 1.0) < 1e-3
    assert monitor.last_report["features/covariance_rank"] == 0.0
    assert monitor.collapsed_epochs == [0, 1]
    # 256 samples of 32-d features: they can reach rank 32; 0.25 x 32 = 8.
    assert len(messages) == 2 and "effective rank is 1.00, below 0.25 x 32" in messages[0]
    texts = _text_events(tmp_path)
    assert len(texts) == 2 and "collapse warning at epoch 0" in texts[0]


def test_spread_features_with_a_rank_one_projector_output_are_not_flagged(tmp_path):
    monitor, messages = _fit(tmp_path, constant_backbone=False, rank_one_projector=True)
    report = monitor.last_report
    # The embeddings lie on one line (the old, embedding-based rule warned at 1.00 < 4) ...
    assert abs(report["embeddings/effective_rank"] - 1.0) < 1e-3
    assert report["embeddings/covariance_rank"] == 1.0
    # ... but the ReLU features of a random linear layer keep most of their 32 directions.
    assert report["features/effective_rank"] > 0.25 * FEATURES
    assert report["features/covariance_rank"] == report["features/covariance_rank_max"] == 32.0
    assert monitor.collapsed_epochs == [] and messages == []
    assert _text_events(tmp_path) == []
