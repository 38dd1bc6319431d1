"""What the console shows during a run, with one line per real problem.

The progress bar, the run directory, the result, and one line for each warning.

Lightning's start-up notices (GPU/TPU availability, "Tip: try litlogger", "Loading
train_dataloader to estimate ...") are INFO records of its ``rank_zero`` loggers and are
raised to WARNING here; deprecation notices of the libraries (nothing a user of this project
can act on) are ignored; every remaining warning prints as one line instead of Python's two
(``file:line: Category: message`` plus the source line).
"""

from __future__ import annotations

import logging
import warnings

from lightning_fabric.loggers.tensorboard import TensorBoardLogger as FabricTensorBoardLogger
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

_LIBRARIES = r"(torch|torchvision|pytorch_lightning|lightning_fabric|lightning|timm|lightly)(\.|$)"
_INFO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "pytorch_lightning.accelerators.cuda",  # "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [...]"
)


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def quiet_console() -> None:
    for name in _INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=_LIBRARIES)
    # A resumed run writes into its own checkpoint folder: that it is not empty is expected
    # (ModelCheckpoint warns about it on every resume).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.formatwarning = _one_line


class QuietTensorBoardLogger(TensorBoardLogger):
    """TensorBoard logger without ``hparams.yaml``: the run's ``config.yaml`` already holds the
    resolved config (the method's saved hyper-parameters are that config)."""

    def log_hyperparams(self, params, metrics=None) -> None:
        return None

    @rank_zero_only
    def save(self) -> None:
        # pytorch_lightning's TensorBoardLogger.save writes hparams.yaml (an empty "{}" once
        # log_hyperparams is off) besides flushing; the flush is lightning_fabric's save.
        FabricTensorBoardLogger.save(self)
