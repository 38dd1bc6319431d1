"""train.py on one CUDA GPU, as a user runs it: for every method a 2-epoch digits run with
bf16-mixed, channels_last and GPU augmentation, and the same run split at the epoch boundary
and resumed, which must end bit-identical (weights, buffers, CorInfoMax's float64 moving
averages); ``--compile`` (inductor) keeps the checkpoint keys and gives finite losses.

The runs go in parallel (one GPU, tiny models; the GPU machines have 16 cores)."""

import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from cuda_checks import GPU_RUN, METHOD_ARGS, state_dict_differences
from train_helpers import tensorboard_scalars, train

pytestmark = pytest.mark.slow

EPOCHS = ["--epochs", "2"]


def _args(method: str) -> list[str]:
    return ["--method", method, *EPOCHS, *GPU_RUN, *METHOD_ARGS[method]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of this module, in parallel where they are independent: each resume starts as
    soon as its first half ends; the compiled run (inductor takes a while) delays none."""
    root = tmp_path_factory.mktemp("gpu-runs")
    jobs = {f"{m}-straight": _args(m) for m in METHOD_ARGS}
    jobs |= {f"{m}-split": [*_args(m), "trainer.stop_after_epoch=1"] for m in METHOD_ARGS}
    compiled = ["--method", "infonce", "--epochs", "1", *GPU_RUN, "--compile"]
    jobs["infonce-compiled"] = [*compiled, "trainer.log_every_n_steps=5"]  # several losses
    with ThreadPoolExecutor(max_workers=len(jobs) + len(METHOD_ARGS)) as pool:
        futures = {name: pool.submit(train, root, name, *args) for name, args in jobs.items()}
        after_one = {}
        for m in METHOD_ARGS:
            if futures[f"{m}-split"].result().returncode == 0:
                after_one[m] = _load(root / f"{m}-split")
                resume = [*_args(m), "--resume", "auto"]
                futures[f"{m}-split-resume"] = pool.submit(train, root, f"{m}-split", *resume)
        results = {name: f.result() for name, f in futures.items()}
    return root, results, after_one


def _load(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")


def _ok(results, name):
    assert name in results, f"{name} did not run: its first half failed"
    result = results[name]
    assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("method", list(METHOD_ARGS))
def test_two_epochs_on_one_gpu_resume_bit_exactly_at_the_epoch_boundary(runs, method):
    root, results, after_one = runs
    for name in (f"{method}-straight", f"{method}-split", f"{method}-split-resume"):
        _ok(results, name)
    metrics = json.loads((root / f"{method}-straight" / "metrics.json").read_text())
    assert metrics["precision"] == "bf16-mixed" and metrics["devices"] == 1
    speed = metrics["speed"]
    assert speed["augment_on"] == "gpu" and speed["channels_last"] and speed["pin_memory"]
    assert not speed["cudnn_benchmark"]  # deterministic runs keep cuDNN's fixed algorithms
    straight, resumed = _load(root / f"{method}-straight"), _load(root / f"{method}-split")
    assert after_one[method]["epoch"] == 0 and after_one[method]["global_step"] > 0
    assert resumed["global_step"] == straight["global_step"] == 2 * after_one[method]["global_step"]
    assert state_dict_differences(straight["state_dict"], resumed["state_dict"]) == []
    if method == "corinfomax":
        for name in ("criterion.mu1", "criterion.mu2", "criterion.R1", "criterion.R2"):
            assert after_one[method]["state_dict"][name].dtype == torch.float64, name
    losses = [v for _, v in tensorboard_scalars(root / f"{method}-straight")["train/loss"]]
    assert losses and all(math.isfinite(v) for v in losses)


def test_compile_on_cuda_keeps_the_checkpoint_keys_and_the_losses_finite(runs):
    root, results, _ = runs
    _ok(results, "infonce-compiled")
    _ok(results, "infonce-straight")
    metrics = json.loads((root / "infonce-compiled" / "metrics.json").read_text())
    assert metrics["speed"]["compile"] is True and metrics["speed"]["compile_backend"] == "inductor"
    compiled = _load(root / "infonce-compiled")["state_dict"]
    plain = _load(root / "infonce-straight")["state_dict"]
    assert list(compiled) == list(plain)  # no "_orig_mod." prefix: checkpoints load either way
    assert all(compiled[k].shape == plain[k].shape for k in plain)
    losses = [v for _, v in tensorboard_scalars(root / "infonce-compiled")["train/loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
