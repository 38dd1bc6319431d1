"""Method registry: ``--method NAME`` -> LightningModule class (one small file each)."""

from infossl.methods.infonce import InfoNCE

METHODS = {
    "infonce": InfoNCE,
}
