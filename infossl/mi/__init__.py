"""Mutual information I(X; Y) from N paired samples: ``infossl.mi.estimate(x, y)``.

Trains one of the project's estimators (critic bounds, FLO, KNIFE) on a training split with early
stopping on a held-out split, and reports the held-out estimate with a bootstrap uncertainty.
Command line: ``python -m infossl.mi x.npy y.npy``. ``ESTIMATORS`` names the estimators
``estimate`` accepts.

Importing this package is cheap: torch loads on first use of a name below (PEP 562).
"""

__all__ = ["ESTIMATORS", "MIEstimate", "MIInputError", "estimate"]


def __getattr__(name):
    if name == "ESTIMATORS":
        from infossl.mi.models import ESTIMATORS

        return ESTIMATORS
    if name == "MIInputError":
        from infossl.mi.inputs import MIInputError

        return MIInputError
    if name in ("MIEstimate", "estimate"):
        from infossl.mi import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'infossl.mi' has no attribute {name!r}")
