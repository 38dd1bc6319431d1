"""ARCHITECTURE.md's "Add a method: VICReg" runs as written: its loss, method, config and test
blocks (fenced as ``python walkthrough-loss`` etc.) are executed as the files they say they are,
the method is registered at run time where ``--method`` looks (``METHODS`` and
``configs/methods/``), the loss equals a float64 reference written here from the paper's formula
(and passes ``gradcheck``), and the method trains two steps on digits through
``training.run_training``, changing every trained parameter group's weights.

VICReg is not part of the package: the document is the example.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import types

import pytest
import torch
from train_helpers import ROOT

BLOCK = re.compile(r"^```(python|yaml) walkthrough-(\w+)\n(.*?)\n```$", flags=re.S | re.M)
KINDS = ("loss", "method", "config", "test")


def walkthrough_blocks() -> dict[str, str]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    found = BLOCK.findall(text)
    blocks = {kind: code for _, kind, code in found}
    assert sorted(blocks) == sorted(KINDS) and len(found) == len(KINDS), [k for _, k, _ in found]
    assert text.count("walkthrough-") >= len(KINDS)
    return blocks


def _module(name: str, code: str, monkeypatch) -> types.ModuleType:
    """``code`` as the module ``name`` (in sys.modules, as an import would leave it: dataclass
    annotations and ``typing.get_type_hints`` look the module up there)."""
    module = types.ModuleType(name)
    module.__file__ = f"ARCHITECTURE.md:walkthrough:{name}"
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    return module


@pytest.fixture
def vicreg(monkeypatch, tmp_path):
    """The walkthrough's files in place: infossl.losses.vicreg, infossl.methods.vicreg (in
    METHODS) and configs/methods/vicreg.yaml (in a copy of the package's configs)."""
    from infossl import config as C
    from infossl.methods import METHODS

    blocks = walkthrough_blocks()
    loss = _module("infossl.losses.vicreg", blocks["loss"], monkeypatch)
    method = _module("infossl.methods.vicreg", blocks["method"], monkeypatch)
    monkeypatch.setitem(METHODS, "vicreg", method.VICReg)
    configs = tmp_path / "configs"
    shutil.copytree(C.CONFIG_DIR, configs)
    (configs / "methods" / "vicreg.yaml").write_text(blocks["config"] + "\n")
    monkeypatch.setattr(C, "CONFIG_DIR", configs)
    return types.SimpleNamespace(loss=loss, method=method, blocks=blocks)


def reference_vicreg(z1, z2, inv=25.0, var=25.0, cov=1.0, eps=1e-4) -> dict[str, float]:
    """VICReg from its formula, element by element in float64 (Bardes et al., ICLR 2022, Eqs.
    1-6; facebookresearch/vicreg main_vicreg.py): unbiased variances and covariances."""
    n, d = z1.shape
    a, b = z1.tolist(), z2.tolist()
    invariance = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    variance = covariance = 0.0
    for z in (a, b):
        mean = [sum(z[i][j] for i in range(n)) / n for j in range(d)]
        c = [[z[i][j] - mean[j] for j in range(d)] for i in range(n)]
        cov_jk = [
            [sum(c[i][j] * c[i][k] for i in range(n)) / (n - 1) for k in range(d)] for j in range(d)
        ]
        variance += sum(max(0.0, 1.0 - math.sqrt(cov_jk[j][j] + eps)) for j in range(d)) / d / 2
        covariance += sum(cov_jk[j][k] ** 2 for j in range(d) for k in range(d) if j != k) / d
    return {
        "invariance": invariance,
        "variance": variance,
        "covariance": covariance,
        "loss": inv * invariance + var * variance + cov * covariance,
    }


def test_the_document_holds_the_four_blocks_and_names_the_official_weights():
    blocks = walkthrough_blocks()
    assert "class VICReg(BaseMethod)" in blocks["method"]
    assert "def vicreg_loss(" in blocks["loss"]
    for line in ("inv_weight: 25.0", "var_weight: 25.0", "cov_weight: 1.0", "eps: 1.0e-4"):
        assert line in blocks["config"]


def test_vicreg_loss_equals_the_float64_reference(vicreg):
    g = torch.Generator().manual_seed(0)
    # Columns of different spread: some dimensions under the std target of 1 (hinge active),
    # some above it; correlated columns, so the covariance term is not zero.
    scale = torch.tensor([0.2, 0.5, 0.9, 1.5, 3.0], dtype=torch.float64)
    z1 = torch.randn(12, 5, generator=g, dtype=torch.float64) * scale
    z1[:, 1] += 0.7 * z1[:, 0]
    z2 = z1 + 0.3 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    terms = vicreg.loss.vicreg_loss(z1, z2)
    expected = reference_vicreg(z1, z2)
    assert min(expected["variance"], expected["covariance"], expected["invariance"]) > 0
    for name, value in expected.items():
        torch.testing.assert_close(terms[name].item(), value, rtol=1e-12, atol=1e-12)
    weighted = vicreg.loss.vicreg_loss(z1, z2, inv_weight=1.0, var_weight=2.0, cov_weight=3.0)
    ref = reference_vicreg(z1, z2, inv=1.0, var=2.0, cov=3.0)
    torch.testing.assert_close(weighted["loss"].item(), ref["loss"], rtol=1e-12, atol=1e-12)


def test_vicreg_loss_gradient_is_its_finite_difference(vicreg):
    g = torch.Generator().manual_seed(1)
    z1 = (torch.randn(6, 3, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    z2 = (torch.randn(6, 3, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: vicreg.loss.vicreg_loss(a, b)["loss"], (z1, z2))
    # The diagnostic terms are detached: only ``loss`` carries the gradient.
    terms = vicreg.loss.vicreg_loss(z1, z2)
    assert terms["loss"].requires_grad and not terms["variance"].requires_grad


def test_the_documents_own_test_block_passes(vicreg):
    namespace: dict = {"__name__": "walkthrough_test"}
    exec(compile(vicreg.blocks["test"], "ARCHITECTURE.md:walkthrough-test", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_the_method_trains_two_steps_on_digits_through_run_training(vicreg, tmp_path):
    import pytorch_lightning as pl

    from infossl.reliability.checkpoint_io import load_checkpoint_safely
    from infossl.training import TrainRequest, run_training

    overrides = [
        "backbone.name=lightly:resnet-9",
        "backbone.width=0.125",
        "projector.hidden_dim=64",
        "projector.output_dim=32",
        "data.augmentation=digits",
        "data.batch_size=64",
        "data.num_workers=0",
        "data.train_fraction=0.1",  # 144 of the 1,437 training digits: two batches of 64
        "optimizer.warmup_epochs=0",  # a warm-up from lr 0 would leave the first step still
        "trainer.epochs=1",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "diagnostics.every_n_epochs=0",
    ]
    request = TrainRequest(
        method="vicreg",
        data="digits",
        overrides=overrides,
        run_root=tmp_path / "runs",
        name="vicreg-digits",
    )
    result = run_training(request)
    assert result["status"] == "finished" and result["global_step"] == 2
    metrics = result["metrics"]
    for term in ("loss", "invariance", "variance", "covariance"):
        assert math.isfinite(metrics[f"train/{term}"]), term
    # The logged loss is the config's weighted sum of the logged terms (no regularizers); the
    # variance hinge averages relu(1 - std) over dimensions and two views: within [0, 1).
    assert 0 <= metrics["train/variance"] < 1
    weighted = (
        25 * metrics["train/invariance"]
        + 25 * metrics["train/variance"]
        + metrics["train/covariance"]
    )
    assert metrics["train/loss"] == pytest.approx(weighted, rel=1e-5)

    run_dir = tmp_path / "runs" / "vicreg-digits"
    checkpoint = load_checkpoint_safely(run_dir / "checkpoints" / "last.ckpt")
    cfg = checkpoint["hyper_parameters"]["cfg"]
    assert cfg["method"] == "vicreg" and cfg["loss"]["inv_weight"] == 25.0
    # The same seed builds the same initial model (run_training seeds, then builds).
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    untrained = vicreg.method.VICReg(cfg, checkpoint["hyper_parameters"]["num_classes"])
    trained = checkpoint["state_dict"]
    assert set(trained) == set(untrained.state_dict())
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    for prefix in ("backbone.", "projector.", "online_probe."):
        moved = max(
            (trained[k] - v).abs().max().item()
            for k, v in untrained.state_dict().items()
            if k.startswith(prefix) and v.is_floating_point()
        )
        assert moved > 1e-6, prefix
    # The official projector's last Linear has no bias.
    last = max(int(k.split(".")[2]) for k in trained if k.startswith("projector.layers."))
    assert f"projector.layers.{last}.weight" in trained
    assert f"projector.layers.{last}.bias" not in trained
    assert (run_dir / "backbone.pt").is_file()
