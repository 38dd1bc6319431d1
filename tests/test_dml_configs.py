"""dml-ce / dml-pairwise configs and model: the official code's settings (jeromerony/
dml_cross_entropy README and experiment.py, utils/utils.py SmoothCrossEntropy)."""

import pytest
import torch
import torch.nn as nn

from infossl import config as C
from infossl.methods.dml import DMLCrossEntropy, DMLPairwise

# --config file -> official README row: epochs, lr at batch 128, momentum, feature BatchNorm.
PAPER = [
    ("configs/papers/dml_ce_cub200.yaml", 30, 0.02, 0.0, "none", (0.75, 4 / 3)),
    ("configs/papers/dml_ce_cars196.yaml", 100, 0.05, 0.0, "batch", (1.0, 1.0)),
]


@pytest.mark.parametrize(("path", "epochs", "lr", "momentum", "norm", "ratio"), PAPER)
def test_paper_configs_hold_the_official_settings(path, epochs, lr, momentum, norm, ratio):
    cfg = C.resolve_views(C.merge_file(C.default_config("dml-ce", "folder"), path))
    C.validate(cfg)
    assert cfg.trainer.epochs == epochs
    assert cfg.data.batch_size == 128 and cfg.data.image_size == 224
    # Our lr is quoted at batch 256 and scaled by batch / 256.
    assert cfg.optimizer.lr * cfg.data.batch_size / 256 == pytest.approx(lr)
    assert cfg.optimizer.momentum == momentum and cfg.optimizer.name == "sgd"
    assert cfg.optimizer.weight_decay == 5e-4 and cfg.optimizer.warmup_steps == 100
    assert cfg.optimizer.min_lr == 0.0
    assert cfg.loss.feature_norm == norm
    assert cfg.loss.label_smoothing == 0.1 and cfg.loss.dropout == 0.5
    assert cfg.loss.embedding_dim == 0  # the 2048-d ResNet-50 features
    assert cfg.backbone.name == "resnet50" and cfg.backbone.pretrained
    assert cfg.backbone.freeze_bn and cfg.data.class_split
    (view,) = cfg.data.views
    assert tuple(view.crop_scale) == (0.16, 1.0) and view.hflip_p == 0.5
    assert tuple(view.get("crop_ratio", (0.75, 4 / 3))) == pytest.approx(ratio)


def _cfg(method: str, *overrides: str) -> dict:
    cfg = C.default_config(method, "digits")
    cfg = C.apply_overrides(
        cfg, ["backbone.width=0.125", "backbone.freeze_bn=true", "loss.feature_norm=batch"]
    )
    cfg = C.apply_overrides(cfg, list(overrides))
    return C.to_plain(C.resolve_views(cfg))


def test_dml_ce_model_is_the_official_one():
    method = DMLCrossEntropy(_cfg("dml-ce"), num_classes=5)
    dropout, linear = method.classifier
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.5
    assert linear.out_features == 5 and not linear.weight.any() and not linear.bias.any()
    (norm,) = method.projector
    assert isinstance(norm, nn.BatchNorm1d) and not norm.affine
    assert method.online_probe is None
    method.train()
    bns = [m for m in method.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # frozen statistics (set_bn_eval)
    assert all(m.weight.requires_grad for m in bns)  # their affine weights still train
    assert method.projector.training and method.classifier.training


def test_no_weight_decay_on_one_dimensional_parameters():
    method = DMLCrossEntropy(_cfg("dml-ce"), num_classes=5)
    method._trainer = None  # configure_optimizers without a Trainer: world size 1
    method._schedule_lengths = lambda: (10, 100)
    optimizer = method.configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert all(p.ndim == 1 for p in groups["no_decay"]["params"])
    assert all(p.ndim > 1 for p in groups["decay"]["params"])
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0
    assert any(p is method.classifier[1].weight for p in groups["decay"]["params"])


def test_pairwise_embedding_head_and_loss():
    method = DMLPairwise(_cfg("dml-pairwise", "loss.embedding_dim=16", "loss.name=snca"), 5)
    z = method.embed(torch.randn(4, 3, 16, 16))
    assert z.shape == (4, 16)
    assert method.criterion.name == "snca"
