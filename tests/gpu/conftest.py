"""The GPU tier: every test under tests/gpu needs a CUDA device and is skipped, with the reason
in pytest's summary (``-ra``), where ``torch.cuda.is_available()`` is false. Run it alone with
``python -m pytest tests/gpu`` or through ``benchmarks/gpu_check.sh``.

The modules import only torch and the helpers at collection; everything else is imported inside
the tests, so on a CPU machine the tier collects and skips without loading Lightning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def _no_cuda_reason() -> str | None:
    if torch.cuda.is_available():
        return None
    build = torch.version.cuda or "none (CPU-only build)"
    return (
        "no CUDA device: torch.cuda.is_available() is False "
        f"(torch {torch.__version__}, CUDA {build})"
    )


def pytest_collection_modifyitems(config, items):
    reason = _no_cuda_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def cuda():
    """The first CUDA device, with the sync debug mode and the float32 matmul precision as
    torch's defaults leave them (a test that changes them resets them)."""
    device = torch.device("cuda", 0)
    mode = torch.cuda.get_sync_debug_mode()
    precision = torch.get_float32_matmul_precision()
    yield device
    torch.cuda.set_sync_debug_mode(mode)
    torch.set_float32_matmul_precision(precision)
