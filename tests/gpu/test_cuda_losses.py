"""Each loss under CUDA autocast (bf16-mixed and 16-mixed) equals its float32 value within the
tolerances stated in tests/cuda_checks.py, and CorInfoMax's moving averages stay float64 on the
device. tests/test_cuda_checks.py runs the same cases under CPU autocast."""

import pytest
import torch
from cuda_checks import (
    LOSS_CASES,
    NETWORK,
    PRECISIONS,
    SAME_VALUES,
    assert_autocast_close,
    loss_case,
    under_autocast,
)


@pytest.fixture(autouse=True)
def _full_float32_matmuls():
    # The float32 reference must be float32: TF32 matmuls (10-bit mantissa) would make it as
    # rough as the half-precision run it judges.
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_under_autocast_equals_its_float32_value(cuda, name, precision):
    loss, inputs, behind_network = loss_case(name, cuda)
    reference, value = under_autocast(loss, inputs, "cuda", precision, not behind_network)
    assert value.device.type == "cuda"
    tolerance = NETWORK[precision] if behind_network else SAME_VALUES
    assert_autocast_close(reference, value, tolerance, f"{name} {precision}")


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_corinfomax_state_stays_float64_on_the_device(cuda, precision):
    from infossl.losses.corinfomax import CorInfoMaxLoss

    dtype = PRECISIONS[precision]
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(2, 64, 32, generator=g).to(cuda) for _ in range(3)]
    plain = CorInfoMaxLoss(32, gather_distributed=False).to(cuda)
    mixed = CorInfoMaxLoss(32, gather_distributed=False).to(cuda)
    projector = torch.nn.Linear(32, 32).to(cuda)
    for z1, z2 in batches:
        # Half-precision activations as the projector under autocast returns them.
        with torch.autocast("cuda", dtype=dtype):
            a, b = projector(z1), projector(z2)
            assert a.dtype == dtype
            mixed(a, b)["loss"].backward()
        plain(a.detach().float(), b.detach().float())
    for name in ("mu1", "mu2", "R1", "R2"):
        buffer = getattr(mixed, name)
        assert buffer.dtype == torch.float64 and buffer.device.type == "cuda", name
        # Same values in, same float64 moving averages out: autocast never touched them.
        torch.testing.assert_close(buffer, getattr(plain, name), rtol=0, atol=1e-12, msg=name)
    assert projector.weight.grad is not None and bool(torch.isfinite(projector.weight.grad).all())
