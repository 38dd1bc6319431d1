"""The LightningModules behind ``--method NAME`` (one small file each).

``METHODS`` maps each ``--method`` name to its class. Every class is built from a resolved
config (``infossl.config``) and the number of labelled classes; ``BaseMethod`` holds the shared
backbone, projector, online probe, optimizer and logging.
"""

from infossl.methods.base import BaseMethod
from infossl.methods.corinfomax import CorInfoMax
from infossl.methods.dml import DMLCrossEntropy, DMLPairwise
from infossl.methods.flo import FLO
from infossl.methods.infonce import InfoNCE
from infossl.methods.remine import ReMINE

METHODS = {
    "infonce": InfoNCE,
    "corinfomax": CorInfoMax,
    "flo": FLO,
    "remine": ReMINE,
    "dml-ce": DMLCrossEntropy,
    "dml-pairwise": DMLPairwise,
}

__all__ = [
    "METHODS",
    "BaseMethod",
    "InfoNCE",
    "CorInfoMax",
    "FLO",
    "ReMINE",
    "DMLCrossEntropy",
    "DMLPairwise",
]
