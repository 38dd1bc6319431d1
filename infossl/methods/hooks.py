"""Callbacks a config switches on (diagnostics, fault handling), kept out of training.py."""

from __future__ import annotations

import pytorch_lightning as pl


def extra_callbacks(cfg: dict) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = []
    d = cfg["diagnostics"]
    if d["every_n_epochs"] > 0:
        from infossl.eval.monitor import CollapseMonitor

        callbacks.append(
            CollapseMonitor(
                d["every_n_epochs"], d["num_samples"], d["collapse_fraction"], d["knife_entropy"]
            )
        )
    return callbacks
