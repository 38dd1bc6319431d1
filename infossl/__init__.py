"""InfoSSL: self-supervised and metric learning with mutual-information objectives.

Subpackages (each lists its public names in ``__all__``; importing ``infossl`` loads none of them
until first use):

* ``infossl.losses``: the SSL losses (CorInfoMax, InfoNCE, FLO, ReMINE), MI bounds on a critic
  score matrix, critics, KNIFE, metric-learning losses; plain PyTorch.
* ``infossl.mi``: ``estimate(x, y)``, I(X; Y) from paired samples with a held-out split.
* ``infossl.methods``: the LightningModules behind ``--method``.
* ``infossl.eval``: collapse diagnostics, kNN, linear probe, retrieval, embedding maps.
* ``infossl.data``: datasets, view transforms, GPU augmentation and the datamodule.
* ``infossl.reliability``: atomic checkpoints, safe loading, resume, preemption, bad data.

``__version__`` is the package version.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "eval", "losses", "methods", "mi", "reliability")
__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
