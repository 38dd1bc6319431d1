"""Small Lightning callbacks the training script always installs."""

from __future__ import annotations

import random
import time

import numpy as np
import pytorch_lightning as pl
import torch

from infossl.lightning_compat import should_update_logs


def logging_step(trainer) -> bool:
    """True on the steps whose on-step values Lightning writes (every ``log_every_n_steps``,
    and when stopping). ``self.log`` on the other steps stores values nobody reads, at ~0.1-1 ms
    of Python per call: with ten terms, more than a GPU step of a small model takes."""
    return should_update_logs(trainer)


class RNGStateCheckpoint(pl.Callback):
    """Save and restore the Python, NumPy and torch RNG states in every checkpoint.

    Lightning restores weights, optimizer, scheduler, loops and global step, but not the RNG,
    so a resumed run would draw other augmentations and another data order than an
    uninterrupted one. States are stored as tensors and plain lists: weights_only loading.
    """

    def state_dict(self) -> dict:
        np_state = np.random.get_state()
        return {
            "python": _to_plain(random.getstate()),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict) -> None:
        random.setstate(_to_tuple(state["python"]))
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(value):
    return [_to_plain(v) for v in value] if isinstance(value, tuple) else value


def _to_tuple(value):
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list) else value


class Throughput(pl.Callback):
    """Global training images/s (all views counted once per image), on the progress bar and
    in TensorBoard as ``train/images_per_sec``. Measured between consecutive batch ends so that
    data loading is included; no device synchronisation is added. Logged on logging steps only
    (the rate of the step before it; ``self.log`` costs Python time on every call)."""

    def __init__(self):
        self._last = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if self._last is not None and logging_step(trainer):
            images = batch[1].shape[0] * trainer.world_size
            pl_module.log(
                "train/images_per_sec",
                images / (now - self._last),
                prog_bar=True,
                on_step=True,
                on_epoch=False,
            )
        self._last = now


class LastCheckpointEveryEpoch(pl.Callback):
    """Write ``last.ckpt`` at the end of every training epoch (after validation).

    Lightning 2.6's ModelCheckpoint writes ``last`` only when it also saved a top-k checkpoint
    in that step (or at train end), so with numbered checkpoints every N epochs ``last.ckpt``
    would lag up to N epochs behind; a crash would then lose them.
    """

    def __init__(self, path):
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module):
        # The full training state; said explicitly, or Lightning logs "`weights_only` was not
        # set, defaulting to `False`" at every save (about saving, easily misread as loading).
        trainer.save_checkpoint(self.path, weights_only=False)


class StopAfterEpoch(pl.Callback):
    """End this invocation after ``epoch`` epochs while the schedule still spans all epochs;
    ``--resume auto`` continues exactly where it stopped."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epoch:
            trainer.should_stop = True


class BadImageCounter(pl.Callback):
    """Counts the unreadable images the folder loader stepped over (summed over processes)."""

    def __init__(self):
        self.count = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        skipped = int(batch[2])  # one sync per step, only for folder datasets
        if skipped:
            self.count += skipped
            pl_module.log("data/skipped_images", float(self.count), on_step=True, on_epoch=False)

    def total(self, trainer) -> int:
        import torch

        value = torch.tensor(float(self.count))
        return int(trainer.strategy.reduce(value, reduce_op="sum"))
