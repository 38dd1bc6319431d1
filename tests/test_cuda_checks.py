"""The comparisons of the GPU tier (tests/cuda_checks.py) checked on the CPU: every loss case
of tests/gpu/test_cuda_losses.py under CPU autocast in bf16 and fp16 within the same stated
tolerances, the tolerance catching a loss that lets autocast run its logits in half precision,
the device-restricted sync probe, the bit-exact checkpoint comparison, and the GPU runs'
train.py arguments resolving to the settings they are meant to test."""

from pathlib import Path

import pytest
import torch
from cuda_checks import (
    GPU_RUN,
    LOSS_CASES,
    METHOD_ARGS,
    NETWORK,
    PRECISIONS,
    SAME_VALUES,
    DeviceSyncProbe,
    assert_autocast_close,
    loss_case,
    state_dict_differences,
    under_autocast,
)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_every_gpu_loss_case_meets_its_tolerance_under_cpu_autocast(precision):
    for name in LOSS_CASES:
        loss, inputs, behind_network = loss_case(name, "cpu")
        reference, value = under_autocast(loss, inputs, "cpu", precision, not behind_network)
        tolerance = NETWORK[precision] if behind_network else SAME_VALUES
        assert_autocast_close(reference, value, tolerance, f"{name} {precision}")
        assert 0.05 < abs(float(reference)) < 50, name  # a real loss value, not 0 == 0


def _naive_infonce(z1, z2, temperature=0.1):
    # SimCLR's one-direction loss with nothing kept out of autocast: the logits' matmul and
    # their log-sum-exp run in bf16 under CPU autocast.
    a, b = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    logits = a @ b.T / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean().float()


def test_the_tolerance_catches_a_loss_that_runs_its_logits_in_half_precision():
    loss, (z1, z2), _ = loss_case("infonce", "cpu")
    reference, value = under_autocast(_naive_infonce, [z1, z2], "cpu", "bf16-mixed")
    # bf16's 8-bit mantissa on logits of O(10): off by far more than float32 rounding.
    error = abs(float(value) - float(reference))
    assert error > 100 * (SAME_VALUES["atol"] + SAME_VALUES["rtol"] * abs(float(reference)))
    with pytest.raises(AssertionError, match="naive"):
        assert_autocast_close(reference, value, SAME_VALUES, "naive")
    # Our InfoNCE on the same rounded inputs is exact.
    ours_reference, ours = under_autocast(loss, [z1, z2], "cpu", "bf16-mixed")
    assert float(ours) == float(ours_reference)


def test_a_loss_returned_in_half_precision_is_refused():
    with pytest.raises(AssertionError, match="loss in torch.bfloat16"):
        assert_autocast_close(torch.tensor(1.0), torch.tensor(1.0, dtype=torch.bfloat16), {})
    with pytest.raises(AssertionError, match="nan"):
        assert_autocast_close(torch.tensor(1.0), torch.tensor(float("nan")), SAME_VALUES, "x")


def test_corinfomax_moving_averages_stay_float64_under_cpu_autocast():
    from infossl.losses.corinfomax import CorInfoMaxLoss

    g = torch.Generator().manual_seed(3)
    plain = CorInfoMaxLoss(16, gather_distributed=False)
    mixed = CorInfoMaxLoss(16, gather_distributed=False)
    for _ in range(3):
        z1, z2 = torch.randn(2, 32, 16, generator=g).to(torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = mixed(z1, z2)["loss"]
        assert value.dtype == torch.float32
        plain(z1.float(), z2.float())
    for name in ("mu1", "mu2", "R1", "R2"):
        buffer = getattr(mixed, name)
        assert buffer.dtype == torch.float64, name
        assert torch.equal(buffer, getattr(plain, name)), name
    assert not torch.equal(mixed.R1, torch.eye(16, dtype=torch.float64))  # it did update


def test_device_sync_probe_sees_only_its_device_and_blocking_host_copies():
    x = torch.ones(4)
    with DeviceSyncProbe("cpu") as cpu_probe:
        float(x.sum())
    assert cpu_probe.syncs == ["aten._local_scalar_dense.default"]
    # A CPU scalar read is no device sync on a CUDA run: the probe for CUDA ignores it.
    with DeviceSyncProbe("cuda") as cuda_probe:
        float(x.sum())
        x[x > 0].sum()
    assert cuda_probe.syncs == []
    # Host -> device copies, with "meta" standing in for a device: blocking ones are reported
    # (each waits for the device's queue), non_blocking ones are not.
    with DeviceSyncProbe("meta") as meta_probe:
        x.to("meta")
        x.to("meta", non_blocking=True)
        torch.empty(4, device="meta").copy_(x)
        torch.empty(4, device="meta") * 2  # device work without a copy
    assert meta_probe.syncs == [
        "aten._to_copy.default: blocking copy from the host",
        "aten.copy_.default: blocking copy from the host",
    ]
    # linalg's host-side error check (cholesky = cholesky_ex + the check) is reported.
    with DeviceSyncProbe("cpu") as linalg_probe:
        torch.linalg.cholesky(torch.eye(3))
        torch.linalg.cholesky_ex(torch.eye(3))
    assert linalg_probe.syncs == [
        "aten._linalg_check_errors.default: reads the solver's info on the host"
    ]
    # A boolean mask on the device is reported, as HostSyncProbe reports it.
    with DeviceSyncProbe("cpu") as mask_probe:
        x[x > 0]
    assert any("boolean mask" in s for s in mask_probe.syncs)


def test_state_dict_differences_require_bit_identical_tensors():
    a = {"w": torch.arange(4, dtype=torch.float64), "n": torch.tensor(3), "x": 1}
    assert state_dict_differences(a, {k: v.clone() if k != "x" else v for k, v in a.items()}) == []
    b = dict(a, w=a["w"].clone())
    b["w"][2] = torch.nextafter(b["w"][2], torch.tensor(9.0, dtype=torch.float64))  # one ulp
    assert state_dict_differences(a, b) == ["w: max |difference| 4.44e-16"]
    c = dict(a, w=a["w"].float(), extra=torch.zeros(1))
    c.pop("n")
    assert state_dict_differences(a, c) == [
        "extra: only in one",
        "n: only in one",
        "w: torch.float64(4,) vs torch.float32(4,)",
    ]


def test_the_gpu_runs_arguments_resolve_to_the_settings_they_test(tmp_path):
    """What tests/gpu/test_cuda_training.py passes to train.py, parsed and resolved as train.py
    does (up to the device): bf16, GPU augmentation, NHWC, deterministic kernels, every method."""
    from infossl import cli_train as cli
    from infossl import config as C
    from infossl.runtime import DeviceError, resolve_devices
    from infossl.speed import resolve_speed
    from infossl.training import TrainRequest, _resolve

    for method, extra in METHOD_ARGS.items():
        argv = ["--method", method, "--data", "digits", "--epochs", "2", *GPU_RUN, *extra]
        args = cli.build_parser().parse_intermixed_args(argv)
        request = TrainRequest(
            method=args.method,
            data=args.data,
            flags=cli.flag_values(args),
            overrides=args.overrides,
            gpus=args.gpus,
            run_root=tmp_path,
        )
        cfg = C.to_plain(_resolve(request).cfg)
        speed = resolve_speed(cfg, "gpu")
        assert speed["augment_on"] == "gpu" and speed["channels_last"], method
        assert speed["pin_memory"] and not speed["cudnn_benchmark"], method
        assert cfg["trainer"]["precision"] == "bf16-mixed" and cfg["trainer"]["deterministic"]
        assert args.gpus == 1
        if not torch.cuda.is_available():
            with pytest.raises(DeviceError, match="CUDA"):
                resolve_devices(cfg["trainer"], args.gpus)
    assert not any(tmp_path.iterdir())  # resolving writes nothing
