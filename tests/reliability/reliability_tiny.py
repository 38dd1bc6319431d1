"""A tiny LightningModule and Trainer factory for the reliability tests (seconds, CPU)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from infossl.reliability.checkpoint_io import AtomicCheckpointIO


class IndexDataset(Dataset):
    """Item i is (i as a float feature, i): the batches say which samples were drawn."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor([float(i)]), i


class TinyModule(pl.LightningModule):
    """Linear regression whose training step appends (epoch, global step, sample indices) to
    ``log_path`` (one JSON line per step), so tests can compare data order across runs."""

    def __init__(
        self, log_path: str | None = None, n: int = 32, batch_size: int = 4, step_sleep: float = 0.0
    ):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(1, 1)

    def train_dataloader(self):
        return DataLoader(
            IndexDataset(self.hparams.n), batch_size=self.hparams.batch_size, shuffle=True
        )

    def training_step(self, batch, batch_idx):
        x, index = batch
        if self.hparams.log_path:
            with open(self.hparams.log_path, "a") as handle:
                line = {
                    "epoch": self.current_epoch,
                    "step": self.global_step,
                    "indices": index.tolist(),
                }
                handle.write(json.dumps(line) + "\n")
        if self.hparams.step_sleep:
            import time

            time.sleep(self.hparams.step_sleep)
        return (self.layer(x) - 2 * x).pow(2).mean()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=1e-3, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
        return [optimizer], [scheduler]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def make_trainer(root: Path, callbacks=(), max_epochs: int = 2, **kwargs) -> pl.Trainer:
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
    kwargs.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=list(callbacks),
        plugins=[AtomicCheckpointIO()],
        **kwargs,
    )
