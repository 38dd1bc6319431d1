"""The LightningDataModule that feeds training views and validation images to a method.

Multi-view training batches, plain validation batches for the probe, and a fixed pair-of-views
subset for the collapse diagnostics.

With ``data.augment_on: gpu`` the training loader yields uint8 images and the views are made
after the batch reached the training device (``on_after_batch_transfer``, which Lightning
calls on the datamodule when it defines it), by ``GPUMultiViewAugment`` with per-sample
parameters drawn from the same distributions as the CPU pipeline."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from infossl.config import ConfigError
from infossl.data.class_split import class_split_dataset, dataset_targets, num_train_classes
from infossl.data.datasets import build_dataset, dataset_info
from infossl.data.gpu_augment import GPUMultiViewAugment, build_gpu_input_transform
from infossl.data.nuisance import nuisance_dataset
from infossl.data.seeding import EpochSeededSampler, SeededItems
from infossl.data.transforms import build_eval_transform, build_multiview_transform
from infossl.reliability.safe_images import (
    Batch,
    SafeImageLoader,
    SubstituteBadItems,
    collate_with_skips,
    skip_transform,
)
from infossl.runtime import resolve_num_workers
from infossl.speed import resolve_speed


def _fixed_subset(dataset, fraction_or_count: float, seed: int):
    """A deterministic subset: a fraction (<= 1) or a count (> 1) of the items."""
    n = len(dataset)
    count = int(round(n * fraction_or_count)) if fraction_or_count <= 1 else int(fraction_or_count)
    count = max(1, min(n, count))
    if count == n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:count].tolist()))


class SSLDataModule(pl.LightningDataModule):
    """The training views and the labelled validation images of a resolved config's ``data``.

    Training items are the configured views of each image (``data.views``, made on the CPU by
    torchvision or on the device by :class:`GPUMultiViewAugment`), drawn in an order and with
    augmentations seeded by (seed, epoch) alone, so a resumed run sees the same batches.

    Args:
        cfg: a resolved config (``infossl.config``); reads ``data``, ``seed`` and the loader keys.
        speed: ``infossl.speed.resolve_speed(cfg, accelerator)`` (CPU values if None).
    """

    def __init__(self, cfg: dict, speed: dict | None = None):
        super().__init__()
        self.cfg = cfg
        self.speed = speed or resolve_speed(cfg, "cpu")
        d = cfg["data"]
        self.info = dataset_info(d["name"], d["dir"])
        self.mean, self.std = self.info["mean"], self.info["std"]
        self.train_set = self.val_set = self.train_sampler = None
        self.gpu_augment = None
        self._generator: torch.Generator | None = None
        self._resume_epoch = 0
        if self.speed["augment_on"] == "gpu":
            self.gpu_augment = GPUMultiViewAugment(d["views"], d["image_size"], self.mean, self.std)

    @property
    def num_classes(self) -> int | None:
        """Classes the training set holds (the first half of them under data.class_split)."""
        n = self.info["num_classes"]
        return num_train_classes(n) if self.cfg["data"]["class_split"] and n else n

    def _dataset(self, split: str, transform, loader=None):
        d = self.cfg["data"]
        if d["nuisance"] == "tint":
            # s drawn per index, the held-out split with its own seed (nuisance_dataset, which
            # eval_linear.py uses too); the tint comes before the views' transform.
            base = self._labelled_dataset(split, None, loader)
            return nuisance_dataset(base, transform, split, d["nuisance_values"])
        return self._labelled_dataset(split, transform, loader)

    def _labelled_dataset(self, split: str, transform, loader=None):
        d = self.cfg["data"]
        if d["class_split"]:
            # Metric learning: train on the first half of the classes, validate (Recall@K) on
            # the unseen second half.
            part = "train" if split == "train" else "test"
            return class_split_dataset(
                d["name"],
                d["dir"],
                part,
                self.info["num_classes"],
                transform,
                d["download"],
                loader,
            )
        return build_dataset(d["name"], d["dir"], split, transform, d["download"], loader=loader)

    def _build(self, split: str, transform):
        d = self.cfg["data"]
        if d["name"] != "folder":
            return self._dataset(split, transform)
        # Folders hold whatever users put there: unreadable files are skipped and counted
        # (data.on_bad_image: skip) or stop the run with their path (error).
        loader = SafeImageLoader(d["on_bad_image"])
        return SubstituteBadItems(self._dataset(split, skip_transform(transform), loader))

    def train_label_counts(self) -> torch.Tensor | None:
        """Images per class in the training set (None when it has no labels)."""
        self.setup("fit")
        targets = torch.as_tensor(dataset_targets(self.train_set))
        targets = targets[targets >= 0]
        if len(targets) == 0:
            return None
        return torch.bincount(targets, minlength=self.num_classes or 0)

    def check_available(self) -> None:
        """Build the datasets now so missing data fails before any run directory is written."""
        self.setup("fit")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        d = self.cfg["data"]
        if self.gpu_augment is None:
            views = build_multiview_transform(d["views"], d["image_size"], self.mean, self.std)
        else:  # uint8 tensors at the native size (fixed-size datasets) or image_size (folders)
            views = build_gpu_input_transform(d["image_size"], self.info["image_size"])
        train = self._build("train", views)
        self.train_set = _fixed_subset(train, d["train_fraction"], self.cfg["seed"])
        self.val_set = self._build(
            "val", build_eval_transform(d["image_size"], self.mean, self.std)
        )
        self.train_sampler = self._train_sampler()

    def _train_sampler(self):
        """data.sampler m_per_class: pytorch-metric-learning's MPerClassSampler, batches of
        batch_size / m classes with m images each (P x K), for the pairwise losses, which need
        positives in every batch. ``random`` (the default, and what dml-ce's official code
        uses): uniformly shuffled batches."""
        d = self.cfg["data"]
        if d["sampler"] == "random":
            return None
        if d["sampler"] != "m_per_class":
            raise ConfigError(f"data.sampler must be random or m_per_class, not '{d['sampler']}'")
        from pytorch_metric_learning.samplers import MPerClassSampler

        targets = dataset_targets(self.train_set)
        classes, m, batch = len(set(targets.tolist())), d["m_per_class"], d["batch_size"]
        if m < 1 or batch % m or classes * m < batch:
            raise ConfigError(
                f"data.sampler=m_per_class needs data.m_per_class (={m}) to divide the batch "
                f"size {batch} and {classes} classes x {m} >= {batch}"
            )
        return MPerClassSampler(targets, m, batch_size=batch, length_before_new_iter=len(targets))

    def _loader(self, dataset, drop_last: bool, sampler=None) -> DataLoader:
        d, speed = self.cfg["data"], self.speed
        # auto: the cores per process on this node (the trainer knows how many processes).
        per_node = self.trainer.num_devices if self.trainer is not None else 1
        workers = resolve_num_workers(d["num_workers"], per_node)
        return DataLoader(
            dataset,
            batch_size=d["batch_size"],
            sampler=sampler,
            drop_last=drop_last,
            # Each new iterator draws its workers' base seed from this generator; without it
            # the draw comes from the global RNG, which a resume (new workers) would shift.
            generator=torch.Generator().manual_seed(self.cfg["seed"]),
            num_workers=workers,
            persistent_workers=speed["persistent_workers"] and workers > 0,
            pin_memory=speed["pin_memory"],
            prefetch_factor=speed["prefetch_factor"] if workers > 0 else None,
            collate_fn=collate_with_skips,
        )

    def augment_batch(self, batch: Batch, rank: int = 0) -> Batch:
        """uint8 images on their device -> the configured views (no host synchronisation).

        The device generator is seeded per batch from the CPU RNG plus the process rank:
        ``seed_everything`` gives every DDP process the same device RNG, which would give
        sample i of every process's batch the same crop and colours (the CPU pipeline's
        workers are seeded per rank too). The CPU RNG is in every checkpoint
        (RNGStateCheckpoint), so a resumed run draws the same seeds; drawing on the CPU
        copies nothing from the device."""
        images = batch[0]
        self.gpu_augment.to(images.device)  # its mean/std buffers; a no-op after the first
        if self._generator is None or self._generator.device != images.device:
            self._generator = torch.Generator(device=images.device)
        seed = int(torch.randint(0, 2**62, ()))
        self._generator.manual_seed(seed + rank)
        views = self.gpu_augment(images, generator=self._generator)
        return Batch(views, batch[1], batch[2], batch[3] if len(batch) > 3 else None)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.gpu_augment is not None and self.trainer is not None and self.trainer.training:
            return self.augment_batch(batch, getattr(self.trainer, "global_rank", 0))
        return batch

    def _epoch(self) -> int:
        """The epoch the fit loop passes to ``set_epoch``. A resumed fit creates its first
        iterator (workers prefetch at once) before it restores the loop counters, so until
        then the epoch saved in the checkpoint by ``state_dict`` stands in."""
        trainer = self.trainer
        current = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0
        return max(current, self._resume_epoch)

    def state_dict(self) -> dict:
        # Lightning saves this in every checkpoint and restores it (load_state_dict) before the
        # optimizers are configured, i.e. before the first training iterator exists.
        return {"loader_epoch": self._epoch()}

    def load_state_dict(self, state: dict) -> None:
        self._resume_epoch = int(state["loader_epoch"])

    def train_dataloader(self) -> DataLoader:
        # Order and views from (seed, epoch) alone: exact resume with any number of workers.
        sampler = EpochSeededSampler(
            len(self.train_set), self.cfg["seed"], self._epoch, base=self.train_sampler
        )
        # drop_last: contrastive and covariance losses need full, equal-sized local batches.
        return self._loader(SeededItems(self.train_set), drop_last=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, drop_last=False)

    def diagnostic_views(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented views of a fixed validation subset, drawn once with a fixed seed."""
        d = self.cfg["data"]
        views = build_multiview_transform(d["views"], d["image_size"], self.mean, self.std)
        subset = _fixed_subset(self._build("val", None), count, self.cfg["seed"])
        with torch.random.fork_rng():
            torch.manual_seed(self.cfg["seed"])
            pairs = [views(subset[i][0]) for i in range(len(subset))]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
