"""CollapseMonitor inside a real Lightning fit: a run whose projector output is constant is
flagged (console warning, TensorBoard text, recorded epoch); a healthy run is not."""

import warnings

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from infossl.eval.monitor import CollapseMonitor

DIM = 16


class _TinyMethod(pl.LightningModule):
    """backbone -> projector, the two attributes the monitor reads; trains a dummy loss."""

    def __init__(self, constant_projector: bool):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.projector = nn.Linear(32, DIM)
        if constant_projector:  # every input maps to the bias: a fully collapsed embedding
            nn.init.zeros_(self.projector.weight)
            nn.init.normal_(self.projector.bias)
            self.projector.weight.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        return self.projector(self.backbone(batch[0])).pow(2).mean() * 0.0

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.0)


def _fit(tmp_path, constant_projector: bool) -> tuple[CollapseMonitor, list[str]]:
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
        trainer.fit(_TinyMethod(constant_projector), data, data)
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


def test_constant_projector_is_flagged_every_epoch_in_console_and_tensorboard(tmp_path):
    monitor, messages = _fit(tmp_path, constant_projector=True)
    # Identical rows: one non-zero singular value, so RankMe's effective rank is exactly 1.
    assert abs(monitor.last_report["embeddings/effective_rank"] - 1.0) < 1e-3
    assert monitor.collapsed_epochs == [0, 1]
    assert len(messages) == 2 and "1.00 < 0.25 x 16" in messages[0]
    texts = _text_events(tmp_path)
    assert len(texts) == 2 and "collapse warning at epoch 0" in texts[0]


def test_healthy_run_is_not_flagged(tmp_path):
    monitor, messages = _fit(tmp_path, constant_projector=False)
    # A random linear map of spread features keeps most of the 16 directions.
    assert monitor.last_report["embeddings/effective_rank"] > 0.25 * DIM
    assert monitor.collapsed_epochs == [] and messages == []
    assert _text_events(tmp_path) == []
