"""Method registry: ``--method NAME`` -> LightningModule class (one small file each)."""

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
