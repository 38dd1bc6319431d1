"""last.ckpt must exist after every epoch: Lightning 2.6's save_last=True with save_top_k=0
writes it only at the end of training; LastCheckpointEveryEpoch writes it every epoch."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from reliability_tiny import TinyModule, make_trainer

from infossl.callbacks import LastCheckpointEveryEpoch
from infossl.reliability.checkpoint_io import load_checkpoint_safely


class _StepOfLastCkpt(pl.Callback):
    """At the start of each epoch, the global step stored in last.ckpt (None if absent)."""

    def __init__(self, path):
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(
            load_checkpoint_safely(self.path)["global_step"] if self.path.exists() else None
        )


def _fit(tmp_path, checkpoint):
    probe = _StepOfLastCkpt(tmp_path / "last.ckpt")
    trainer = make_trainer(tmp_path, [checkpoint, probe], max_epochs=3, enable_checkpointing=True)
    trainer.fit(TinyModule(n=8, batch_size=4))  # 2 steps per epoch
    return probe.seen, sorted(p.name for p in tmp_path.glob("*.ckpt"))


def test_lightning_save_last_with_top_k_0_writes_nothing_until_training_ends(tmp_path):
    seen, files = _fit(tmp_path, ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True))
    assert seen == [None, None, None] and files == ["last.ckpt"]


def test_last_checkpoint_is_rewritten_after_every_epoch(tmp_path):
    torch.manual_seed(0)
    seen, files = _fit(tmp_path, LastCheckpointEveryEpoch(tmp_path / "last.ckpt"))
    assert seen == [None, 2, 4] and files == ["last.ckpt"]
    assert load_checkpoint_safely(tmp_path / "last.ckpt")["global_step"] == 6
