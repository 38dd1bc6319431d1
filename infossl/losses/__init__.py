"""Loss functions: plain tensor code, no Lightning. One file per family.

Self-supervised losses on two views (N x D embeddings each; under DDP they gather the global
batch with gradients): :class:`CorInfoMaxLoss`, :class:`InfoNCELoss`, :class:`FLOSSLLoss` and
:class:`ReMINESSLLoss`, with the functional forms of the last three. MI bounds on a critic score
matrix (``scores[i, j] = T(x_i, y_j)``, diagonal = joint pairs): the functions ``infonce``,
``dv``, ``mine``, ``nwj``, ``tuba``, ``js`` and ``smile`` of ``infossl.losses.mi_bounds`` and
``infossl.losses.flo.flo`` (not re-exported here: ``infonce`` and ``flo`` are also module names),
and :class:`MIBoundLoss` holding one of them. Critics, KNIFE densities and the metric-learning
losses complete ``__all__``; ReMINE's downstream set losses are in ``infossl.losses.mi_sets``.

Importing this package is cheap: a name loads its module on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CorInfoMaxLoss": "corinfomax",
    "InfoNCELoss": "infonce",
    "nt_xent_terms": "infonce",
    "FLOSSLLoss": "ssl_mi",
    "flo_ssl_loss": "ssl_mi",
    "ReMINESSLLoss": "ssl_mi",
    "remine_ssl_loss": "ssl_mi",
    "MIBoundLoss": "mi_bounds",
    "MIBoundOutput": "mi_bounds",
    "RowStats": "mi_bounds",
    "row_statistics": "mi_bounds",
    "SeparableCritic": "critics",
    "ConcatCritic": "critics",
    "FLOSharedCritic": "critics",
    "MarginalKNIFE": "knife",
    "ConditionalKNIFE": "knife",
    "KNIFE": "knife",
    "JointKNIFE": "knife",
    "KnifeRegularizer": "knife_regularizer",
    "smooth_cross_entropy": "dml_ce",
    "mi_lower_bound": "dml_ce",
    "PairwiseLoss": "pairwise",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
