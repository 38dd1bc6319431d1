"""Evaluation of a representation from its frozen features.

Collapse diagnostics, weighted kNN, the frozen-feature linear probe, retrieval Recall@K and
2-D embedding maps.

``diagnostics`` (effective rank, alignment, uniformity), ``knn``, ``linear``, ``retrieval`` and
``embedding_map`` are plain functions of feature tensors; the collapse monitor callback
(``monitor``) and the ``eval_linear.py`` driver (``offline``) build on them.

Importing this package is cheap: a name loads its module on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "effective_rank": "diagnostics",
    "covariance_rank": "diagnostics",
    "alignment": "diagnostics",
    "uniformity": "diagnostics",
    "knn_top1": "knn",
    "extract_features": "linear",
    "train_linear_probe": "linear",
    "recall_at_k": "retrieval",
    "embedding_maps": "embedding_map",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
