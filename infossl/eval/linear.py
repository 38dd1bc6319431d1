"""Offline linear probe on a frozen backbone, plain PyTorch on one device.

Protocol (CorInfoMax ``cifars-tiny/linear_base.py`` + ``lin_classifier.py``; solo-learn
``main_linear.py``; lightly ``benchmarks/imagenet/resnet50/linear_eval.py``): one ``nn.Linear``
on the backbone features, cross-entropy, SGD with momentum 0.9 and no weight decay, cosine
learning-rate schedule (updated every step, from ``lr`` down to ``min_lr``, no warm-up). The
backbone stays in ``eval()`` mode under ``torch.no_grad()``: its BatchNorm statistics are
frozen and it receives no gradient.

Feature standardisation: none by default (``feature_norm="none"``), as CorInfoMax and
solo-learn, whose classifier is the bare ``nn.Linear``. ``feature_norm="batchnorm"`` puts a
``BatchNorm1d(affine=False)`` in front (MAE's linear probe, He et al. 2022, Sec. A.2): still a
linear map at test time, but the usable learning rate no longer depends on the feature scale.

Two ways to feed it:
- ``train_linear_probe``: features computed once by ``extract_features`` (no augmentation);
- ``train_linear_probe_on_images``: the crop-flip protocol of CorInfoMax / solo-learn, features
  recomputed from each augmented batch.
Top-1/top-5 are torchmetrics ``MulticlassAccuracy(top_k=k, average="micro")``; top-5 is
``None`` with fewer than 5 classes (it would be trivially 1).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from tqdm import tqdm

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def autocast(device: torch.device | str, precision: str):
    """``torch.autocast`` for Lightning's "bf16-mixed" / "16-mixed"; a no-op for "32"."""
    dtype = AUTOCAST.get(str(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _images_and_labels(batch) -> tuple[torch.Tensor, torch.Tensor]:
    # (images, labels) or (images, labels, extra...) as torchvision / our datasets yield.
    return batch[0], batch[1]


def _frozen_features(backbone: nn.Module, images, device, precision) -> torch.Tensor:
    with torch.no_grad(), autocast(device, precision):
        out = backbone(images.to(device, non_blocking=True))
    return out.flatten(1).float()  # the probe itself always runs in float32


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    precision: str = "32",
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of a frozen backbone over a loader.

    Puts the backbone in ``eval()`` mode (and leaves it there); autocast for bf16-mixed /
    16-mixed.

    Args:
        backbone: images -> (B, D) features.
        loader: yields (images, labels, ...) batches.
        device: where the backbone runs.
        precision: "32", "bf16-mixed" or "16-mixed".
        desc: progress-bar label.

    Returns:
        (features N x D float32 on the CPU, labels N int64).
    """
    backbone.eval()
    features, labels = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=None):
        images, targets = _images_and_labels(batch)
        features.append(_frozen_features(backbone, images, device, precision).cpu())
        labels.append(torch.as_tensor(targets))
    return torch.cat(features), torch.cat(labels).long()


class TopKAccuracy:
    """Running top-1 and top-5 (when ``num_classes >= 5``) over batches of logits."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        ks = [k for k in (1, 5) if k <= num_classes]
        self.metrics = {
            k: MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro").to(device)
            for k in ks
        }

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        for metric in self.metrics.values():
            metric.update(logits, labels.to(logits.device))

    def compute(self) -> dict[str, float | None]:
        return {f"top{k}": float(self.metrics[k].compute()) if k in self.metrics else None
                for k in (1, 5)}  # fmt: skip


def accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """{"top1": float, "top5": float or None (fewer than 5 classes)} of one set of logits."""
    meter = TopKAccuracy(num_classes, logits.device)
    meter.update(logits, labels)
    return meter.compute()


def cosine_lr(base: float, minimum: float, step: int, total: int) -> float:
    """``minimum + (base - minimum) * (1 + cos(pi * step / total)) / 2``: ``base`` at step 0,
    ``minimum`` at ``step == total``."""
    progress = min(step / max(1, total), 1.0)
    return minimum + 0.5 * (base - minimum) * (1.0 + math.cos(math.pi * progress))


def make_classifier(feature_dim: int, num_classes: int, feature_norm: str = "none") -> nn.Module:
    if feature_norm == "none":
        return nn.Linear(feature_dim, num_classes)
    if feature_norm == "batchnorm":
        return nn.Sequential(
            nn.BatchNorm1d(feature_dim, affine=False), nn.Linear(feature_dim, num_classes)
        )
    raise ValueError(f"unknown feature_norm '{feature_norm}'; use none or batchnorm")


def _seeded_classifier(dim, num_classes, feature_norm, seed, device) -> nn.Module:
    # The initial weights depend on ``seed`` only; the caller's global RNG stream is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = make_classifier(dim, num_classes, feature_norm)
    return classifier.to(device)


def _fit(
    batches: Batches,
    build: Callable[[int], nn.Module],
    steps_per_epoch: int,
    epochs: int,
    lr: float,
    min_lr: float,
    momentum: float,
    weight_decay: float,
    desc: str,
) -> tuple[nn.Module, list[dict]]:
    """SGD + per-step cosine schedule; the classifier is built at the first batch (its input
    width is the features'). Returns it in eval mode, with one history entry per epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    classifier, optimizer = None, None
    total, step, history = epochs * steps_per_epoch, 0, []
    for epoch in tqdm(range(epochs), desc=desc, leave=False, disable=None):
        loss_sum, correct, seen, current = 0.0, 0, 0, lr
        for features, labels in batches(epoch):
            if classifier is None:
                classifier = build(features.shape[1])
                classifier.train()
                optimizer = torch.optim.SGD(
                    classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
                )
            current = cosine_lr(lr, min_lr, step, total)
            for group in optimizer.param_groups:
                group["lr"] = current
            logits = classifier(features)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * labels.shape[0]
            correct += int((logits.detach().argmax(dim=1) == labels).sum())
            seen += labels.shape[0]
            step += 1
        history.append(
            {
                "epoch": epoch,
                "lr": current,
                "train_loss": loss_sum / max(1, seen),
                "train_top1": correct / max(1, seen),
            }
        )
    if classifier is None:
        raise ValueError("the training data yielded no batch")
    classifier.eval()
    return classifier, history


@torch.no_grad()
def _evaluate(classifier: nn.Module, batches: Iterable, num_classes: int, device) -> dict:
    meter = TopKAccuracy(num_classes, device)
    for features, labels in batches:
        meter.update(classifier(features), labels)
    return meter.compute()


def _rows(x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int) -> Iterator:
    for start in range(0, x.shape[0], batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


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
    feature_norm: str = "none",
) -> dict:
    """Linear probe on precomputed frozen features: SGD with momentum, cosine schedule.

    CorInfoMax's offline protocol (serdarozsoy/corinfomax-ssl: 100 epochs, lr 0.2, batch 256,
    no weight decay), with MAE's affine-free BatchNorm before the layer for
    ``feature_norm="batchnorm"`` (facebookresearch/mae, ``main_linprobe.py``). Samples are
    reshuffled every epoch from a generator seeded by ``seed``.

    Args:
        train_features: (N, D) training features.
        train_labels: (N,) their labels.
        val_features: (M, D) validation features.
        val_labels: (M,) their labels.
        num_classes: classifier outputs.
        epochs: passes over the training features.
        batch_size: samples per SGD step.
        lr: initial learning rate.
        min_lr: final learning rate of the cosine.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        seed: classifier initialisation and shuffling.
        device: where to train.
        feature_norm: "none" or "batchnorm".

    Returns:
        dict of ``top1`` and ``top5`` on the validation features and ``history``: per epoch
        {"epoch", "lr" (last step's), "train_loss", "train_top1"}.
    """
    device = torch.device(device)
    x, y = train_features.to(device).float(), train_labels.to(device).long()
    generator = torch.Generator().manual_seed(seed)

    def batches(epoch):
        return _rows(x, y, torch.randperm(x.shape[0], generator=generator).to(device), batch_size)

    classifier, history = _fit(
        batches,
        lambda dim: _seeded_classifier(dim, num_classes, feature_norm, seed, device),
        -(-x.shape[0] // batch_size),
        epochs,
        lr,
        min_lr,
        momentum,
        weight_decay,
        "linear probe",
    )
    vx, vy = val_features.to(device).float(), val_labels.to(device).long()
    order = torch.arange(vx.shape[0], device=device)
    result = _evaluate(classifier, _rows(vx, vy, order, max(batch_size, 4096)), num_classes, device)
    return {**result, "history": history}


def train_linear_probe_on_images(
    backbone: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    num_classes: int,
    feature_dim: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "32",
    epochs: int = 100,
    lr: float = 0.2,
    min_lr: float = 0.002,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    feature_norm: str = "none",
) -> dict:
    """The crop-flip protocol: frozen features recomputed from every (augmented) training batch
    of ``train_loader``; same classifier, optimizer and schedule as ``train_linear_probe``.
    ``seed`` fixes the classifier's initial weights and seeds the global RNG (which a shuffling
    DataLoader and its workers' augmentations draw from). ``feature_dim``, when given, is
    checked against the backbone's output. Returns {"top1", "top5", "history"} on
    ``val_loader``."""
    device = torch.device(device)
    torch.manual_seed(seed)
    backbone.eval()

    def build(dim):
        if feature_dim is not None and dim != feature_dim:
            raise ValueError(f"backbone gives {dim} features, feature_dim says {feature_dim}")
        return _seeded_classifier(dim, num_classes, feature_norm, seed, device)

    def features_of(loader):
        for batch in loader:
            images, labels = _images_and_labels(batch)
            features = _frozen_features(backbone, images, device, precision)
            yield features, torch.as_tensor(labels).to(device).long()

    classifier, history = _fit(
        lambda epoch: features_of(train_loader),
        build,
        len(train_loader),
        epochs,
        lr,
        min_lr,
        momentum,
        weight_decay,
        "linear probe (crop-flip)",
    )
    result = _evaluate(classifier, features_of(val_loader), num_classes, device)
    return {**result, "history": history}
