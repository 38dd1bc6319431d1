"""One framework's SimCLR run for ``benchmarks/versus.py``, alone in its process.

    python benchmarks/_versus_child.py SPEC.json

SPEC names the framework (infossl, lightly or solo), the ``.npy`` file of uint8 images every
framework trains on (held in memory, served as PIL images), batch, workers, threads, device,
precision and the timing windows. After every optimizer step (``on_train_batch_end``) a
callback ticks the windows; the first step's end is timed from ``t0``, the parent's clock
just before it started this process, and then the forward FLOPs of the framework's backbone
are counted (one image, eval mode; before the first window starts). Once every window is
timed the result (images/s per window, time to the first step, peak memory, FLOPs, package
versions) is written to SPEC's ``out`` and the process ends at once: what a framework does
after its last step (validation, checkpoints) is not measured by anyone.

Only torch, numpy and PIL are imported at the top: the solo-learn run uses solo-learn's own
environment (its pinned ``lightning``), where neither infossl nor ``pytorch_lightning`` is
imported.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import resource
import runpy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _shared import ArrayImages, Windows, sync  # this script's folder is sys.path[0]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # solo-learn's and infossl's CIFAR-10 normalisation
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# --tiny (the tests): a width-1/8 ResNet-9 (lightly's ResNetGenerator, in infossl and the lightly
# module alike) and a 64-32 projector. solo-learn has no backbone that small: it keeps ResNet-18.
TINY_INFOSSL = [
    "backbone.name=lightly:resnet-9",
    "backbone.width=0.125",
    "projector.hidden_dim=64",
    "projector.output_dim=32",
]


def backbone_gflop(backbone: torch.nn.Module, spec: dict, device: torch.device) -> float:
    """Forward GFLOP of the framework's own backbone for one image at the run's size
    (``torch.utils.flop_counter``), in eval mode so no BatchNorm statistic moves: the
    frameworks' ResNet-18 CIFAR stems need not do the same work."""
    from torch.utils.flop_counter import FlopCounterMode

    size = np.load(spec["images"], mmap_mode="r").shape[1]
    image = torch.zeros(1, 3, size, size, device=device)
    training = backbone.training
    backbone.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backbone(image)
    backbone.train(training)
    return counter.get_total_flops() / 1e9


def versions() -> dict:
    """Versions of the packages this run imported (each framework's own Lightning)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for module, dist in (
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("lightning", "lightning"),
        ("pytorch_lightning", "pytorch-lightning"),
        ("lightly", "lightly"),
        ("infossl", "infossl"),
    ):
        # A source tree on PYTHONPATH (solo-learn) has no distribution to ask.
        if module in sys.modules:
            with contextlib.suppress(PackageNotFoundError):
                found[dist] = version(dist)
    return found


class Recorder:
    """Ticks the windows after each step; writes the result and exits after the last one."""

    def __init__(self, spec: dict, device: torch.device):
        self.spec, self.device = spec, device
        self.windows = Windows(
            spec["warmup"], spec["steps"], spec["repeats"], spec["batch"], device
        )
        self.first_step_s = None
        self.backbone_gflop = None
        self.profiler = None

    def after_step(self, module: torch.nn.Module) -> None:
        if self.first_step_s is None:
            sync(self.device)
            self.first_step_s = time.time() - self.spec["t0"]
            self.backbone_gflop = backbone_gflop(module.backbone, self.spec, self.device)
        done = self.windows.tick()
        if self.spec.get("profile") and self.windows.done == self.windows.warmup:
            # --profile: torch.profiler over the timed steps (their rates then include its
            # overhead; the table, not the rates, is what such a run is for).
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities, profile_memory=True)
            self.profiler.__enter__()
        if done:
            self.finish()

    def callback(self, base: type):
        """A Callback of the framework's own Lightning (``base``) that calls ``after_step``."""
        recorder = self

        class VersusRecorder(base):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                recorder.after_step(pl_module)

        return VersusRecorder()

    def finish(self) -> None:
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            sort = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
            table = self.profiler.key_averages().table(sort_by=sort, row_limit=30)
            Path(self.spec["profile"]).write_text(table + "\n")
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        result = {
            "framework": self.spec["framework"],
            "windows": self.windows.rates,
            "first_step_s": self.first_step_s,
            "backbone_gflop_per_image": self.backbone_gflop,
            "versions": versions(),
            "peak_rss_mib": rss_mib,
            "torch_threads": torch.get_num_threads(),
        }
        if self.device.type == "cuda":
            result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        Path(self.spec["out"]).write_text(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        for worker in multiprocessing.active_children():  # loader workers
            worker.terminate()
        os._exit(0)


def run_infossl(spec: dict, recorder: Recorder, arrays: np.ndarray) -> None:
    """train.py's own path (``infossl.cli_train.main``: config resolution, run directory, the
    Trainer with its callbacks, TensorBoard logging, checkpoint plugin), the dataset swapped
    for the in-memory images and the timing callback added to its callbacks."""
    import pytorch_lightning as pl

    from infossl import cli_train, trainer_factory
    from infossl.data.datamodule import SSLDataModule

    def in_memory(self, split, transform):
        return ArrayImages(arrays if split == "train" else arrays[: spec["batch"]], transform)

    SSLDataModule._build = in_memory
    callbacks = trainer_factory.build_callbacks
    trainer_factory.build_callbacks = lambda cfg, run_dir, checkpoints=True: [
        *callbacks(cfg, run_dir, checkpoints),
        recorder.callback(pl.Callback),
    ]
    cli_train.main(
        [
            "--method",
            "infonce",
            "--data",
            "cifar10",
            "--epochs",
            "1",
            "--batch-size",
            str(spec["batch"]),
            "--num-workers",
            str(spec["workers"]),
            "--accelerator",
            "gpu" if spec["device"] == "cuda" else "cpu",
            "--precision",
            spec["precision"],
            "--run-dir",
            spec["scratch"],
            "--name",
            "infossl",
            *(TINY_INFOSSL if spec["tiny"] else []),
        ]
    )


def run_lightly(spec: dict, recorder: Recorder, arrays: np.ndarray) -> None:
    """A SimCLR LightningModule as lightly's documentation and its benchmarks write one
    (github.com/lightly-ai/lightly, benchmarks/imagenet/resnet50/simclr.py): the views
    concatenated through one backbone call, SimCLRProjectionHead, NTXentLoss, the online
    linear classifier, LARS without weight decay on norms and biases, CosineWarmupScheduler
    per step; torchvision's ResNet-18 with the CIFAR stem; SimCLRTransform at 32 px."""
    import pytorch_lightning as pl
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models import ResNetGenerator
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.models.utils import get_weight_decay_parameters
    from lightly.transforms import SimCLRTransform
    from lightly.utils.benchmarking import OnlineLinearClassifier
    from lightly.utils.lars import LARS
    from lightly.utils.scheduler import CosineWarmupScheduler
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch import nn

    batch, tiny = spec["batch"], spec["tiny"]

    class SimCLR(pl.LightningModule):
        def __init__(self):
            super().__init__()
            if tiny:
                resnet = ResNetGenerator("resnet-9", width=0.125)
                self.backbone = nn.Sequential(
                    *list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1)
                )
                dim, hidden, out = 64, 64, 32
            else:
                resnet = torchvision.models.resnet18()
                resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem
                resnet.maxpool = nn.Identity()
                resnet.fc = nn.Identity()
                self.backbone = resnet
                dim, hidden, out = 512, 2048, 256
            self.projection_head = SimCLRProjectionHead(dim, hidden, out)
            self.criterion = NTXentLoss(temperature=0.2)
            self.online_classifier = OnlineLinearClassifier(feature_dim=dim, num_classes=10)

        def training_step(self, batch, batch_idx):
            views, targets = batch[0], batch[1]
            features = self.backbone(torch.cat(views)).flatten(start_dim=1)
            z0, z1 = self.projection_head(features).chunk(len(views))
            loss = self.criterion(z0, z1)
            self.log("train_loss", loss, prog_bar=True, batch_size=len(targets))
            cls_loss, cls_log = self.online_classifier.training_step(
                (features.detach(), targets.repeat(len(views))), batch_idx
            )
            self.log_dict(cls_log, batch_size=len(targets))
            return loss + cls_loss

        def configure_optimizers(self):
            params, no_decay = get_weight_decay_parameters([self.backbone, self.projection_head])
            optimizer = LARS(
                [
                    {"name": "simclr", "params": params},
                    {"name": "simclr_no_wd", "params": no_decay, "weight_decay": 0.0},
                    {
                        "name": "online_classifier",
                        "params": self.online_classifier.parameters(),
                        "weight_decay": 0.0,
                    },
                ],
                lr=0.4 * batch / 256,
                momentum=0.9,
                weight_decay=1e-4,
            )
            steps = self.trainer.estimated_stepping_batches
            scheduler = CosineWarmupScheduler(
                optimizer, warmup_epochs=steps // 10, max_epochs=steps
            )
            return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    size = arrays.shape[1]
    transform = SimCLRTransform(
        input_size=size, normalize={"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    )
    workers = spec["workers"]
    loader = torch.utils.data.DataLoader(
        ArrayImages(arrays, transform),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=spec["device"] == "cuda",
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="gpu" if spec["device"] == "cuda" else "cpu",
        devices=1,
        precision=spec["precision"],
        logger=TensorBoardLogger(save_dir=spec["scratch"], name="lightly"),
        callbacks=[LearningRateMonitor(), recorder.callback(pl.Callback)],
        default_root_dir=spec["scratch"],
    )
    torch.manual_seed(0)
    trainer.fit(SimCLR(), train_dataloaders=loader)


def run_solo(spec: dict, recorder: Recorder, arrays: np.ndarray) -> None:
    """solo-learn's ``main_pretrain.py`` with its ``scripts/pretrain/cifar/simclr.yaml``
    (hydra overrides below), in solo-learn's environment. Its CIFAR-10 dataset class
    (``torchvision.datasets.CIFAR10``, looked up by name when the datasets are built) is
    replaced by the in-memory images; the timing callback is added to its Trainer."""
    import torchvision

    class InMemoryCIFAR10(ArrayImages):
        def __init__(self, root, train=True, download=False, transform=None):
            super().__init__(arrays if train else arrays[: spec["batch"]], transform)

    torchvision.datasets.CIFAR10 = InMemoryCIFAR10

    import lightning.pytorch as L

    init = L.Trainer.__init__

    @functools.wraps(init)  # keeps the signature main_pretrain.py filters its kwargs by
    def with_recorder(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), recorder.callback(L.Callback)]
        init(self, *args, **kwargs)

    L.Trainer.__init__ = with_recorder
    root = Path(spec["solo_root"])
    cuda = spec["device"] == "cuda"
    overrides = [
        f"optimizer.batch_size={spec['batch']}",
        f"data.num_workers={spec['workers']}",
        "data.train_path=.",
        "data.val_path=.",
        "max_epochs=1",
        f"accelerator={'gpu' if cuda else 'cpu'}",
        # solo-learn scales the lr by len(devices): a list on GPUs; on the CPU a one-digit
        # string, which Lightning's CPU accelerator reads as one process.
        "devices=[0]" if cuda else 'devices="1"',
        "strategy=auto",
        "sync_batchnorm=False",
        f"precision={spec['precision']}",
        "wandb.enabled=False",
        "checkpoint.enabled=False",
        "auto_resume.enabled=False",
        "++num_sanity_val_steps=0",  # infossl and the lightly module run none either
    ]
    if spec["tiny"]:
        overrides += ["method_kwargs.proj_hidden_dim=64", "method_kwargs.proj_output_dim=32"]
    script = root / "main_pretrain.py"
    sys.argv = [
        str(script),
        "--config-path",
        str(root / "scripts" / "pretrain" / "cifar"),
        "--config-name",
        "simclr.yaml",
        *overrides,
    ]
    runpy.run_path(str(script), run_name="__main__")


RUNNERS = {"infossl": run_infossl, "lightly": run_lightly, "solo": run_solo}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    arrays = np.load(spec["images"])
    recorder = Recorder(spec, device)
    with tempfile.TemporaryDirectory() as scratch:
        spec["scratch"] = scratch
        os.chdir(scratch)  # frameworks that write logs into the working directory write here
        RUNNERS[spec["framework"]](spec, recorder, arrays)
    print(f"{spec['framework']}: the run ended before every window was timed", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
