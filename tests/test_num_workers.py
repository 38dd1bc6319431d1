"""``data.num_workers: auto``: the cores of this machine per process, minus one for the process
itself, at most 8; a number is kept as given. The datamodule passes the processes per node."""

from __future__ import annotations

import pytest

from infossl.config import ConfigError
from infossl.runtime import MAX_AUTO_WORKERS, resolve_num_workers


@pytest.mark.parametrize(
    ("cores", "processes", "workers"),
    [(16, 1, 8), (16, 2, 7), (16, 4, 3), (16, 8, 1), (16, 16, 1), (2, 1, 1), (64, 4, 8)],
)
def test_auto_is_the_cores_per_process_minus_one_capped(monkeypatch, cores, processes, workers):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert resolve_num_workers("auto", processes) == workers
    assert resolve_num_workers("auto", {"devices": processes}) == workers
    assert MAX_AUTO_WORKERS == 8


def test_a_number_is_kept_and_a_bad_value_is_refused():
    assert resolve_num_workers(0, 4) == 0
    assert resolve_num_workers(12, 1) == 12
    for bad in (-1, 2.5, "many", True):
        with pytest.raises(ConfigError, match="num_workers must be auto or an integer"):
            resolve_num_workers(bad, 1)
