"""The speed switches: each ``auto`` resolved for the device, and applied to the model.

``data.augment_on``, ``data.pin_memory``, ``data.persistent_workers``, ``data.prefetch_factor``,
``trainer.channels_last``, ``trainer.compile``, ``trainer.cudnn_benchmark``: each ``auto``
resolved to the fastest safe choice for the device the run trains on, and applied to the model
in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when a model is built; config checks run without it
    from torch import nn

SMALL_IMAGES = 64  # GPU augmentation pays off where the CPU pipeline is the bottleneck


def _auto_bool(value, default: bool) -> bool:
    return default if value == "auto" else value


def resolve_speed(cfg: dict, accelerator: str) -> dict:
    """Concrete values for a run on ``accelerator`` ('cpu' or 'gpu'), from a config that
    passed ``infossl.config.validate`` (which checks the values these keys may take)."""
    d, t = cfg["data"], cfg["trainer"]
    cuda = accelerator == "gpu"
    augment_on = d["augment_on"]
    if augment_on == "auto":
        # Not for folders: their images of any size are resized to image_size before the
        # batched crops (build_gpu_input_transform), which lowers the crops' resolution.
        small = d["image_size"] <= SMALL_IMAGES and d["name"] != "folder"
        augment_on = "gpu" if cuda and small else "cpu"
    prefetch = d["prefetch_factor"]
    if prefetch == "auto":
        prefetch = 4 if cuda else 2
    return {
        "augment_on": augment_on,
        "pin_memory": _auto_bool(d["pin_memory"], cuda),
        "persistent_workers": d["persistent_workers"],
        "prefetch_factor": prefetch,
        "channels_last": _auto_bool(t["channels_last"], True),
        "compile": t["compile"],
        "compile_backend": t["compile_backend"],
        "cudnn_benchmark": _auto_bool(t["cudnn_benchmark"], cuda and not t["deterministic"]),
    }


def apply_to_model(method: nn.Module, speed: dict) -> nn.Module:
    """channels_last weights (the method converts its inputs, see BaseMethod.training_step)
    and ``torch.compile`` of the backbone in place: ``Module.compile`` keeps the module and its
    state_dict keys, so checkpoints load with or without it."""
    import torch

    if speed["channels_last"]:
        method.to(memory_format=torch.channels_last)
        method.channels_last = True
    if speed["compile"]:
        method.backbone.compile(backend=speed["compile_backend"])
    return method
