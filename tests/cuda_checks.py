"""What the GPU tier (``tests/gpu``) compares, kept apart from it so that CPU tests
(``tests/test_cuda_checks.py``) check the comparisons themselves: autocast against float32
with stated tolerances, a sync probe restricted to one device type, checkpoint equality, and the
``train.py`` arguments of the GPU runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from sync_probe import HostSyncProbe

PRECISIONS = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}

# A loss fed the half-precision activations autocast gives it, against the float32 loss of the
# very same values: every loss casts its inputs to float32 (float64 for CorInfoMax's
# covariances) outside autocast, so only float32 rounding may differ. A loss that let autocast
# run its similarity matmul or log-sum-exp in half precision misses this by 1e-3 to 1e-1
# (tests/test_cuda_checks.py shows a naive InfoNCE does).
SAME_VALUES = {"rtol": 1e-5, "atol": 1e-5}
# A loss behind a small network (a projector, FLO's u head) whose matmuls autocast does run in
# half precision, against the all-float32 computation: the error is the rounding of inputs and
# weights, unit roundoff u = 2^-8 (bf16) or 2^-11 (fp16), through one or two O(1) layers. On CPU
# autocast the larger of the two cases was off by 1.1e-4 (bf16, loss 0.21) and 3e-7 (fp16); the
# bounds (about 2.4e-3 and 3e-4 at that loss) leave 20x for cuBLAS's kernels and other seeds,
# and scale with u.
NETWORK = {
    "bf16-mixed": {"rtol": 2e-3, "atol": 2e-3},
    "16-mixed": {"rtol": 2.5e-4, "atol": 2.5e-4},
}


def half_inputs(inputs: Sequence, dtype: torch.dtype) -> list:
    """Floating tensors rounded to ``dtype`` (what a layer under autocast outputs); other
    arguments unchanged."""
    return [
        x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs
    ]


def as_float32(inputs: Sequence) -> list:
    return [
        x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs
    ]


def under_autocast(
    loss: Callable[..., torch.Tensor],
    inputs: Sequence,
    device_type: str,
    precision: str,
    round_inputs: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 value, value under autocast) of ``loss(*inputs)``.

    ``round_inputs``: both see the inputs rounded to the autocast dtype (the float32 run gets
    them upcast), so the comparison isolates what the loss itself does in half precision;
    without it both see the float32 inputs and any network inside runs in half precision."""
    dtype = PRECISIONS[precision]
    given = half_inputs(inputs, dtype) if round_inputs else list(inputs)
    with torch.autocast(device_type, enabled=False):
        reference = loss(*as_float32(given))
    with torch.autocast(device_type, dtype=dtype):
        value = loss(*given)
    return reference.detach(), value.detach()


def assert_autocast_close(reference, value, tolerance: dict, name: str = "") -> None:
    """The autocast value is finite, at least float32 (a loss returned in half precision would
    be rounded before backward) and within ``tolerance`` of the float32 value."""
    assert value.dtype in (torch.float32, torch.float64), f"{name}: loss in {value.dtype}"
    assert bool(torch.isfinite(value).all()), f"{name}: {value}"
    torch.testing.assert_close(
        value.to(reference.dtype), reference, **tolerance, msg=lambda m: f"{name}: {m}"
    )


class DeviceSyncProbe(HostSyncProbe):
    """:class:`HostSyncProbe` restricted to ops that touch a tensor on ``device_type``, plus
    linalg's visible error checks and blocking copies from the host to that device (each waits
    for the device's queue to drain, as ``torch.cuda.set_sync_debug_mode`` reports). On CUDA
    it leaves out what costs nothing there: ``int(cpu_tensor)`` on a CPU RNG draw, CPU-only
    bookkeeping. Checks made inside one aten
    op's kernel (``linalg.eigh``'s) are below what a dispatch mode sees: on CUDA the GPU tier
    also runs ``torch.cuda.set_sync_debug_mode``, which sees every blocking copy."""

    def __init__(self, device_type: str = "cuda"):
        super().__init__()
        self.device_type = device_type

    def _on_device(self, values) -> bool:
        for v in values:
            if isinstance(v, torch.Tensor) and v.device.type == self.device_type:
                return True
            if isinstance(v, list | tuple) and self._on_device(v):
                return True
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        positional = args[2] if name == "copy_" and len(args) > 2 else False
        if name in ("_to_copy", "copy_") and not kwargs.get("non_blocking", positional):
            src = args[0] if name == "_to_copy" else args[1]
            target = kwargs.get("device") if name == "_to_copy" else args[0].device
            target = torch.device(target) if target is not None else src.device
            if src.device.type == "cpu" and target.type == self.device_type != "cpu":
                self.syncs.append(f"{func}: blocking copy from the host")
            elif src.device.type == self.device_type != "cpu" and target.type == "cpu":
                self.syncs.append(f"{func}: copy to the host")
        on_device = self._on_device([*args, *kwargs.values()])
        if on_device and name == "_linalg_check_errors":
            # linalg's error check reads the solver's info codes on the host (cholesky, inv,
            # solve without _ex): one sync per call.
            self.syncs.append(f"{func}: reads the solver's info on the host")
        if on_device:
            return super().__torch_dispatch__(func, types, args, kwargs)
        return func(*args, **kwargs)


def state_dict_differences(a: dict, b: dict) -> list[str]:
    """Keys whose tensors are not bit-identical (or missing on one side), each with the
    largest absolute difference: empty when a resumed run equals the uninterrupted one."""
    found = [f"{k}: only in one" for k in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if not isinstance(x, torch.Tensor):
            if x != y:
                found.append(f"{key}: {x!r} != {y!r}")
            continue
        if x.dtype != y.dtype or x.shape != y.shape:
            found.append(f"{key}: {x.dtype}{tuple(x.shape)} vs {y.dtype}{tuple(y.shape)}")
        elif not torch.equal(x, y):
            diff = (x.double() - y.double()).abs().max()
            found.append(f"{key}: max |difference| {float(diff):.3g}")
    return found


# train.py on digits as the GPU tier runs it: one GPU, bf16 autocast, NHWC, the batched
# augmentation on the GPU, deterministic kernels (cuBLAS workspace, no cuDNN benchmark), so a
# resumed run can be compared bit for bit with an uninterrupted one.
GPU_RUN = [
    "--gpus",
    "1",
    "--precision",
    "bf16-mixed",
    "--augment-on",
    "gpu",
    "trainer.channels_last=true",
    "trainer.deterministic=true",
    "diagnostics.every_n_epochs=0",
]
# Method-specific settings a short digits run needs (as the CPU tests give them).
METHOD_ARGS = {
    "infonce": [],
    "corinfomax": [],
    "flo": [],
    "remine": ["loss.estimator=nwj"],
    "dml-ce": ["optimizer.warmup_steps=10"],
    "dml-pairwise": ["loss.name=multi_similarity", "optimizer.warmup_steps=10"],
}


# ---- the losses compared under autocast -----------------------------------------------------
LOSS_CASES = (
    "infonce",
    "infonce_behind_projector",
    "corinfomax",
    "flo_scores",
    "flo_ssl_with_u_head",
    *(f"remine_{e}" for e in ("mine", "smile", "infonce", "nwj", "tuba", "js")),
    "knife_marginal",
    "knife_conditional",
    "dml_ce",
)


def _views(n: int, d: int, device, seed: int = 0, scale: float = 1.0):
    """Two correlated views (n, d): z2 = z1 + noise, as two augmentations' embeddings."""
    g = torch.Generator().manual_seed(seed)
    z1 = scale * torch.randn(n, d, generator=g)
    z2 = z1 + 0.5 * scale * torch.randn(n, d, generator=g)
    return z1.to(device), z2.to(device)


def loss_case(name: str, device) -> tuple[Callable[..., torch.Tensor], list, bool]:
    """(loss, inputs, behind_network) for one of ``LOSS_CASES`` on ``device``. Modules are
    built seeded; stateful losses (CorInfoMax's and MINE's moving averages) are rebuilt inside
    the loss, so the float32 and the autocast call start from the same state.
    ``behind_network``: a small network autocast runs in half precision sits before the
    loss (tolerance ``NETWORK``); otherwise the loss reads the inputs alone (``SAME_VALUES``)."""
    from infossl.losses.corinfomax import CorInfoMaxLoss
    from infossl.losses.dml_ce import smooth_cross_entropy
    from infossl.losses.flo import flo
    from infossl.losses.infonce import InfoNCELoss
    from infossl.losses.knife import KNIFE, MarginalKNIFE
    from infossl.losses.ssl_mi import FLOSSLLoss, ReMINESSLLoss

    torch.manual_seed(0)
    z1, z2 = _views(64, 32, device)
    if name == "infonce":
        return (lambda a, b: InfoNCELoss(0.1)(a, b)["loss"]), [z1, z2], False
    if name == "infonce_behind_projector":
        projector = torch.nn.Linear(32, 32).to(device)
        loss = InfoNCELoss(0.1)
        return (lambda a, b: loss(projector(a), projector(b))["loss"]), [z1, z2], True
    if name == "corinfomax":
        # Paper's CIFAR settings (alpha 250, eps 1e-8), a fresh state per call; training mode
        # updates the float64 moving averages inside the step.
        def corinfomax(a, b):
            return CorInfoMaxLoss(32, alpha=250.0, gather_distributed=False).to(device)(a, b)[
                "loss"
            ]

        return corinfomax, [z1, z2], False
    if name == "flo_scores":
        # g scores of cosine / 0.1, u of O(1): the exp(-u + lse - g) term sees O(10) values.
        a, b = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
        scores = a @ b.T / 0.1
        u = -torch.linspace(0.5, 3.0, 64, device=device)
        return (lambda s, v: flo(s, v)["loss"]), [scores, u], False
    if name == "flo_ssl_with_u_head":
        head = FLOSSLLoss(32, hidden_dim=64).to(device)
        return (lambda a, b: head(a, b)["loss"]), [z1, z2], True
    if name.startswith("remine_"):
        estimator = name.removeprefix("remine_")
        # The method's defaults (raw inner products, temperature 1, lambda 0.1) on embeddings
        # scaled so the scores are O(10), where a half-precision exp would lose the negatives.
        a, b = _views(64, 32, device, scale=0.6)

        def remine(x, y):
            return ReMINESSLLoss(estimator, reg_weight=0.1).to(device)(x, y)["loss"]

        return remine, [a, b], False
    if name == "knife_marginal":
        knife = MarginalKNIFE(8, 16, init_samples=z1[:16, :8].float()).to(device)
        return knife, [z2[:, :8]], False
    if name == "knife_conditional":
        # KNIFE's conditioning networks run in float32 outside autocast (knife.py), so even
        # with networks inside, only the inputs' rounding enters.
        knife = KNIFE(8, 8, marginal_modes=16, conditional_modes=4).to(device)
        knife.marginal.initialize(z2[:16, :8].float())
        return (lambda x, y: knife(x, y).mi), [z1[:, :8], z2[:, :8]], False
    if name == "dml_ce":
        g = torch.Generator().manual_seed(1)
        logits = (8 * torch.randn(64, 10, generator=g)).to(device)
        labels = torch.randint(0, 10, (64,), generator=g).to(device)
        return (lambda x, y: smooth_cross_entropy(x, y, 0.1)), [logits, labels], False
    raise KeyError(name)
