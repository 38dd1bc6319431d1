"""The trainer section of a config as Lightning's accelerator, devices and strategy.

Clear errors for requests this machine cannot serve (shared by train.py and eval_linear.py)."""

from __future__ import annotations

from datetime import timedelta

import torch
from pytorch_lightning.strategies import DDPStrategy


class DeviceError(ValueError):
    """A device request the machine cannot serve."""


def resolve_devices(trainer_cfg: dict, gpus: int | None) -> dict:
    """``--gpus N`` (N > 0) means CUDA with N devices; otherwise accelerator/devices as given."""
    accelerator = trainer_cfg["accelerator"]
    devices = trainer_cfg["devices"]
    if gpus is not None:
        accelerator, devices = ("gpu", gpus) if gpus > 0 else ("cpu", 1)
    available = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda"):
        if available < int(devices):
            raise DeviceError(
                f"asked for {devices} CUDA GPU(s) but this machine has {available}; use "
                f"--gpus {available} or run on CPU with --accelerator cpu --devices N"
            )
    elif accelerator == "auto":
        accelerator = "gpu" if available else "cpu"
    elif accelerator != "cpu":
        raise DeviceError(f"unknown accelerator '{accelerator}'; use auto, cpu or gpu")
    if int(devices) < 1:
        raise DeviceError(f"devices must be at least 1, got {devices}")
    precision = str(trainer_cfg["precision"])
    if precision == "auto":
        precision = "32"
        if accelerator == "gpu":
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if precision == "16-mixed" and accelerator == "cpu":
        raise DeviceError("precision 16-mixed needs a CUDA GPU; on CPU use --precision bf16-mixed")
    return {"accelerator": accelerator, "devices": int(devices), "precision": precision}


MAX_AUTO_WORKERS = 8


def resolve_num_workers(value, devices: dict | int) -> int:
    """``data.num_workers: auto``: the CPU cores this process may use divided by the processes
    on this node, minus one for the training process itself (Lightning's
    ``suggested_max_num_workers``), at most ``MAX_AUTO_WORKERS``. Asking for more workers than
    cores only makes them compete (PyTorch warns "will create N worker processes ...
    suggested max"); an integer is kept as given."""
    from lightning_fabric.utilities.data import suggested_max_num_workers

    from infossl.config import ConfigError

    if value == "auto":
        per_node = devices["devices"] if isinstance(devices, dict) else int(devices)
        return min(MAX_AUTO_WORKERS, suggested_max_num_workers(per_node))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"num_workers must be auto or an integer >= 0, not {value!r}")
    return value


def strategy_for(devices: int, num_nodes: int, timeout_s: float):
    """DDP (gloo on CPU, NCCL on GPU) when more than one process; a bounded collective timeout
    makes the survivors fail instead of hanging when a peer dies.

    gloo fails a collective at once when the peer process dies (its sockets close) and after
    ``timeout`` when the peer hangs (both measured in tests/reliability/test_distributed_faults.py);
    NCCL's watchdog checks every collective against ``timeout`` and, with
    ``TORCH_NCCL_ASYNC_ERROR_HANDLING`` at its default (3), ends the process. The timeout must
    exceed the longest legitimate gap between collectives (rank 0 saving a checkpoint)."""
    if devices * num_nodes == 1:
        return "auto"
    return DDPStrategy(find_unused_parameters=False, timeout=timedelta(seconds=timeout_s))
