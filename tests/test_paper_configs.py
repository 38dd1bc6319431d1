"""The CorInfoMax paper configs resolve strictly and hold the official hyper-parameters
(shared/reference/methods.md section 1.4), with our lr x global batch / 256 scaling undone."""

import pytest

from infossl import config as C

# (data, --config file or None, devices) -> the official README's row:
# epochs, global batch, peak lr, projector hidden/out, BN, alpha, la, min_lr, backbone.
PAPER = [
    ("cifar10", None, 1, 1000, 512, 0.5, 2048, 64, False, 250, 0.01, 1e-6, "resnet18"),
    ("cifar100", None, 1, 1000, 512, 0.5, 4096, 128, False, 1000, 0.01, 1e-6, "resnet18"),
    (
        "folder",
        "configs/papers/corinfomax_tiny_imagenet.yaml",
        1,
        800,
        1024,
        0.5,
        4096,
        128,
        False,
        500,
        0.1,
        1e-6,
        "resnet50",
    ),
    (
        "folder",
        "configs/papers/corinfomax_imagenet100.yaml",
        8,
        400,
        1024,
        1.0,
        4096,
        128,
        False,
        500,
        0.01,
        5e-3,
        "resnet18",
    ),
    (
        "folder",
        "configs/papers/corinfomax_imagenet1k.yaml",
        8,
        100,
        1536,
        0.2,
        8192,
        512,
        True,
        2000,
        0.1,
        1e-6,
        "resnet50",
    ),
]


@pytest.mark.parametrize("row", PAPER, ids=lambda r: r[1] or r[0])
def test_paper_config_matches_the_official_hyper_parameters(row):
    data, path, devices, epochs, batch, lr, hidden, out, bn, alpha, la, min_lr, net = row
    cfg = C.default_config("corinfomax", data)
    if path:
        cfg = C.merge_file(cfg, C.CONFIG_DIR.parent / path)
    cfg = C.resolve_views(cfg)
    C.validate(cfg)
    global_batch = cfg.data.batch_size * devices
    peak = cfg.optimizer.lr * global_batch / 256
    assert (cfg.trainer.epochs, global_batch, cfg.backbone.name) == (epochs, batch, net)
    assert peak == pytest.approx(lr, rel=1e-3)
    # min_lr and warmup_start_lr are fractions of the peak; official: absolute values.
    assert cfg.optimizer.min_lr * peak == pytest.approx(min_lr, rel=1e-3)
    assert cfg.optimizer.warmup_start_lr * peak == pytest.approx(3e-3, rel=1e-3)
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.weight_decay == 1e-4
    p = cfg.projector
    assert (p.hidden_dim, p.output_dim, p.num_layers, p.batch_norm) == (hidden, out, 3, bn)
    assert p.last_bias is False  # CovModel / CovModel6: the final Linear has bias=False
    assert (cfg.loss.alpha, cfg.loss.la_R, cfg.loss.la_mu) == (alpha, la, la)
    assert (cfg.loss.eps, cfg.loss.R_ini) == (1e-8, 1.0)
    assert cfg.data.augmentation == "asymmetric"
