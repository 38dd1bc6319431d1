"""Record the aten ops that copy device data to the host (a host-device synchronisation on
CUDA), so CPU-only tests can prove a hot path has none: ``.item()``/``float()``/``bool()``
(``_local_scalar_dense``), ``nonzero``, boolean-mask indexing, ``masked_select``, ...

``torch.cuda.set_sync_debug_mode`` does this on a GPU only; a dispatch mode sees the same ops
on any device."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "is_nonzero",
    "equal",
    "allclose",
    "unique",
    "_unique2",
    "unique_consecutive",
}


class HostSyncProbe(TorchDispatchMode):
    """``with HostSyncProbe() as probe: ...`` then ``probe.syncs`` lists the syncing ops."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in SYNCING or str(func) == "aten.repeat_interleave.Tensor":
            self.syncs.append(str(func))
        indices = args[1] if name in ("index", "index_put", "index_put_") else None
        if isinstance(indices, list | tuple) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices
        ):
            self.syncs.append(f"{func} with a boolean mask")
        return func(*args, **(kwargs or {}))
