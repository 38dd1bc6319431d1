"""Fault tolerance: atomic checkpoints, safe loading, resume, preemption, bad data.

Importing this package is cheap: a name loads its module on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "atomic_torch_save": "checkpoint_io",
    "load_checkpoint_safely": "checkpoint_io",
    "AtomicCheckpointIO": "checkpoint_io",
    "CheckpointError": "checkpoint_io",
    "choose_resume_checkpoint": "resume",
    "NonFiniteGuard": "nonfinite",
    "NonFiniteLossError": "nonfinite",
    "PreemptionCheckpoint": "preemption",
    "RunDirLock": "run_lock",
    "SafeImageLoader": "safe_images",
    "BadImageError": "safe_images",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
