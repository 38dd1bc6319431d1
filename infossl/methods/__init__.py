"""Method registry: ``--method NAME`` -> LightningModule class (one small file each)."""

from infossl.methods.corinfomax import CorInfoMax
from infossl.methods.infonce import InfoNCE

METHODS = {
    "infonce": InfoNCE,
    "corinfomax": CorInfoMax,
}
