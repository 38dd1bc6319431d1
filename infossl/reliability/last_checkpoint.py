"""``last.ckpt`` after every epoch, whatever the periodic checkpoints do.

pytorch-lightning 2.6's ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes ``last.ckpt``
only when a top-k checkpoint was saved at the same step ("Only save last checkpoint if a
checkpoint was actually saved in this step", callbacks/model_checkpoint.py), i.e. never during
training with ``save_top_k=0``: only once at the very end (measured in
tests/reliability/test_last_checkpoint.py). A run killed in epoch 7 would then have nothing
newer than its last periodic file. This keeps exactly one top-k file, named ``last``, written
every epoch (atomically, through ``AtomicCheckpointIO``).
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1):
        super().__init__(
            dirpath=dirpath,
            filename="last",
            save_top_k=1,  # no monitor: the newest one, overwritten in place each time
            every_n_epochs=every_n_epochs,
            enable_version_counter=False,  # always last.ckpt, never last-v1.ckpt
            save_last=False,
        )

    @property
    def state_key(self) -> str:
        # A second ModelCheckpoint needs its own key for its state to be saved beside the first.
        return "LastCheckpoint"
