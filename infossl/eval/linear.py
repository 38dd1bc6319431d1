"""Offline linear probe on a frozen backbone (plain PyTorch on one device).

Protocol (CorInfoMax ``main_linear.py`` / ``linear_base.py``; solo-learn ``main_linear.py``):
one ``nn.Linear`` on backbone features, SGD with momentum 0.9, no weight decay, cosine schedule
to ``min_lr``, cross-entropy. With ``feature_norm: batchnorm`` (our default) the features pass a
BatchNorm1d without affine parameters first, as MAE's linear probe (He et al. 2022, Sec. A.2):
a linear map, so the probe's capacity is unchanged, but the learning rate no longer depends on
the feature scale (a randomly initialised ResNet's features are large enough to make lr 0.2
diverge, which would flatter every pretrained number). The backbone stays in eval mode, so its
BatchNorm statistics are frozen. Top-1 and top-5 come from torchmetrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from tqdm import tqdm

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST.get(str(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def extract_features(
    backbone: nn.Module, loader, device: torch.device, precision: str = "32", desc: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    backbone.eval()
    features, labels = [], []
    for images, targets in tqdm(loader, desc=desc, leave=False):
        with autocast(device, precision):
            out = backbone(images.to(device, non_blocking=True))
        features.append(out.float().cpu())
        labels.append(targets)
    return torch.cat(features), torch.cat(labels).long()


def accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    out = {}
    for k in (1, 5):
        if k <= num_classes:
            metric = MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")
            out[f"top{k}"] = float(metric(logits, labels))
    return out


def _cosine_lr(base: float, minimum: float, step: int, total: int) -> float:
    progress = min(step / max(1, total), 1.0)
    return minimum + 0.5 * (base - minimum) * (1 + torch.cos(torch.tensor(progress * torch.pi)))


def make_classifier(feature_dim: int, num_classes: int, feature_norm: str) -> nn.Module:
    if feature_norm == "batchnorm":
        return nn.Sequential(
            nn.BatchNorm1d(feature_dim, affine=False), nn.Linear(feature_dim, num_classes)
        )
    if feature_norm == "none":
        return nn.Linear(feature_dim, num_classes)
    raise ValueError(f"unknown feature_norm '{feature_norm}'; use batchnorm or none")


def _fit(
    classifier: nn.Module,
    batches: Callable,
    steps_per_epoch: int,
    epochs: int,
    lr: float,
    min_lr: float,
    momentum: float,
    weight_decay: float,
    desc: str,
) -> list:
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    total, step, history = epochs * steps_per_epoch, 0, []
    classifier.train()
    for epoch in tqdm(range(epochs), desc=desc, leave=False):
        running = 0.0
        for features, labels in batches(epoch):
            for group in optimizer.param_groups:
                group["lr"] = float(_cosine_lr(lr, min_lr, step, total))
            loss = F.cross_entropy(classifier(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
            step += 1
        history.append(running / max(1, steps_per_epoch))
    classifier.eval()
    return history


def train_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.2,
    min_lr: float = 0.002,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    feature_norm: str = "batchnorm",
) -> dict:
    """Train on precomputed features; return top-1/top-5 on the validation features."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    classifier = make_classifier(train_features.shape[1], num_classes, feature_norm).to(device)
    x, y = train_features.to(device), train_labels.to(device)
    n = x.shape[0]

    def batches(epoch):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    history = _fit(
        classifier,
        batches,
        -(-n // batch_size),
        epochs,
        lr,
        min_lr,
        momentum,
        weight_decay,
        "linear probe",
    )
    with torch.no_grad():
        logits = classifier(val_features.to(device)).cpu()
    return {**accuracy(logits, val_labels, num_classes), "train_loss": history}


def train_linear_probe_on_images(
    backbone: nn.Module,
    train_loader,
    val_loader,
    num_classes: int,
    feature_dim: int,
    device: torch.device,
    precision: str = "32",
    epochs: int = 100,
    lr: float = 0.2,
    min_lr: float = 0.002,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    feature_norm: str = "batchnorm",
) -> dict:
    """The crop-flip protocol: features recomputed every batch from augmented images."""
    torch.manual_seed(seed)
    backbone.eval()
    classifier = make_classifier(feature_dim, num_classes, feature_norm).to(device)

    def batches(epoch):
        for images, labels in train_loader:
            with torch.no_grad(), autocast(device, precision):
                features = backbone(images.to(device, non_blocking=True)).float()
            yield features, labels.to(device)

    history = _fit(
        classifier,
        batches,
        len(train_loader),
        epochs,
        lr,
        min_lr,
        momentum,
        weight_decay,
        "linear probe (crop-flip)",
    )
    val_features, val_labels = extract_features(backbone, val_loader, device, precision)
    with torch.no_grad():
        logits = classifier(val_features.to(device)).cpu()
    return {**accuracy(logits, val_labels, num_classes), "train_loss": history}
