"""``eval_linear.py``: what a pretrained backbone learned, measured three labelled ways.

- "offline linear probe": a linear layer trained on the frozen backbone (configs/eval/linear.yaml);
- "kNN k=20" / "kNN k=200": weighted kNN on the same frozen features;
- "online probe during pretraining": the number train.py logged as val/online_top1 (read back
  from the run's metrics.json), reported beside the others and never confused with them.
Results go to ``<run>/eval/<data>_linear.json`` and the run's TensorBoard under ``eval/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from infossl import config as C
from infossl.backbones import build_backbone
from infossl.cli import UserError
from infossl.data.datasets import build_dataset, dataset_info
from infossl.data.transforms import build_crop_flip_transform, build_eval_transform
from infossl.eval import diagnostics
from infossl.eval.knn import knn_top1
from infossl.eval.linear import extract_features, train_linear_probe, train_linear_probe_on_images
from infossl.reliability.checkpoint_io import load_checkpoint_safely
from infossl.rundir import run_dir_of_checkpoint
from infossl.runtime import resolve_devices, resolve_num_workers

EVAL_FLAGS = ("epochs", "batch_size", "lr", "augment", "num_workers", "precision", "seed")


def _eval_settings(args) -> dict:
    cfg = C.load_yaml(C.CONFIG_DIR / "eval" / "linear.yaml")
    given = {k: getattr(args, k) for k in EVAL_FLAGS if getattr(args, k, None) is not None}
    cfg = C.merge_values(cfg, given)
    if str(cfg.precision) not in C.PRECISIONS:
        raise C.ConfigError(f"unknown precision '{cfg.precision}'; use one of {C.PRECISIONS}")
    settings = OmegaConf.to_container(cfg)
    settings["num_workers"] = resolve_num_workers(settings["num_workers"], 1)
    return settings


def load_pretrained(ckpt_path: str, random_init: bool = False, seed: int = 0):
    """(backbone, feature_dim, training config, checkpoint) from a train.py checkpoint; with
    ``random_init`` the same architecture, freshly initialised from ``seed``."""
    checkpoint = load_checkpoint_safely(ckpt_path)
    cfg = checkpoint.get("hyper_parameters", {}).get("cfg")
    if not isinstance(cfg, dict) or "backbone" not in cfg:
        raise UserError(
            f"{ckpt_path} is a checkpoint but not one written by train.py "
            "(it has no hyper_parameters.cfg)"
        )
    b = cfg["backbone"]
    torch.manual_seed(seed)
    backbone, dim = build_backbone(
        b["name"], cfg["data"]["image_size"], b["small_images"], b["zero_init_residual"], b["width"]
    )
    if not random_init:
        backbone.load_state_dict(submodule_state(checkpoint, "backbone"))
    return backbone, dim, cfg, checkpoint


def submodule_state(checkpoint: dict, name: str) -> dict:
    """The state dict of the LightningModule's child ``name`` from a checkpoint."""
    prefix = f"{name}."
    return {
        k.removeprefix(prefix): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(prefix)
    }


def _online_probe_number(run_dir: Path | None) -> float | None:
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text()).get("metrics", {})
    return metrics.get("val/online_top1")


def _loader(dataset, settings: dict, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=settings["batch_size"],
        shuffle=shuffle,
        num_workers=settings["num_workers"],
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def run_evaluation(args) -> dict:
    settings = _eval_settings(args)
    backbone, feature_dim, cfg, checkpoint = load_pretrained(
        args.ckpt, args.random_init, settings["seed"]
    )
    data = args.data or cfg["data"]["name"]
    data_dir = args.data_dir or cfg["data"]["dir"]
    info = dataset_info(data, data_dir)
    if args.protocol == "linear" and not info["num_classes"]:
        raise UserError(
            f"cannot infer the number of classes of --data {data} at {data_dir}: it "
            "has no class sub-folders; give a labelled ImageFolder tree "
            "(DIR/<class>/image.jpg)"
        )
    devices = resolve_devices(
        {
            "accelerator": args.accelerator or "auto",
            "devices": 1,
            "precision": settings["precision"],
        },
        args.gpus,
    )
    device = torch.device("cuda:0" if devices["accelerator"] == "gpu" else "cpu")
    backbone.to(device).eval()
    run_dir = run_dir_of_checkpoint(Path(args.ckpt))
    if args.protocol == "retrieval":
        from infossl.eval.retrieval_protocol import run_retrieval

        return run_retrieval(
            args,
            backbone,
            feature_dim,
            device,
            settings,
            cfg,
            data,
            data_dir,
            run_dir,
            checkpoint,
        )
    size = cfg["data"]["image_size"]
    eval_tf = build_eval_transform(size, info["mean"], info["std"])
    download = bool(args.download)
    train_set = build_dataset(data, data_dir, "train_labeled", eval_tf, download)
    val_set = build_dataset(data, data_dir, "val", eval_tf, download)

    started = time.time()
    precision = devices["precision"]
    train_x, train_y = extract_features(
        backbone, _loader(train_set, settings, False), device, precision, "train features"
    )
    val_x, val_y = extract_features(
        backbone, _loader(val_set, settings, False), device, precision, "val features"
    )
    probe_settings = {
        k: settings[k]
        for k in (
            "epochs",
            "batch_size",
            "lr",
            "min_lr",
            "momentum",
            "weight_decay",
            "seed",
            "feature_norm",
        )
    }
    if settings["augment"] == "none":
        probe = train_linear_probe(
            train_x, train_y, val_x, val_y, info["num_classes"], device=device, **probe_settings
        )
    else:
        crop_flip = build_crop_flip_transform(size, info["mean"], info["std"])
        augmented = build_dataset(data, data_dir, "train_labeled", crop_flip, download)
        probe = train_linear_probe_on_images(
            backbone,
            _loader(augmented, settings, True),
            _loader(val_set, settings, False),
            info["num_classes"],
            feature_dim,
            device,
            precision,
            **{k: v for k, v in probe_settings.items() if k != "batch_size"},
        )

    protocols = {
        "offline linear probe": {
            "top1": probe["top1"],
            "top5": probe.get("top5"),
            "settings": {
                **probe_settings,
                "augment": settings["augment"],
                "optimizer": "SGD, cosine schedule, frozen backbone in eval mode",
            },
        }
    }
    for k in settings["knn_k"]:
        protocols[f"kNN k={k}"] = {
            "top1": knn_top1(
                train_x, train_y, val_x, val_y, k, settings["knn_temperature"], info["num_classes"]
            ),
            "settings": {
                "k": k,
                "temperature": settings["knn_temperature"],
                "similarity": "cosine",
                "weights": "exp(similarity / temperature)",
            },
        }
    online = None if args.random_init else _online_probe_number(run_dir)
    protocols["online probe during pretraining"] = {
        "top1": online,
        "settings": {
            "source": "val/online_top1 of the last pretraining epoch (metrics.json)",
            "note": "trained jointly with the backbone on detached features",
        },
    }

    result = {
        **result_header(args, cfg, checkpoint, data, "linear"),
        "num_train": len(train_y),
        "num_val": len(val_y),
        "protocols": protocols,
        "diagnostics": diagnostics.metrics(val_x),
        "wall_time_s": round(time.time() - started, 1),
    }
    _write(result, args, run_dir, data, "linear")
    return result


def result_header(args, cfg: dict, checkpoint: dict, data: str, protocol: str) -> dict:
    """The fields every evaluation JSON starts with: what was evaluated, and how."""
    return {
        "checkpoint": str(args.ckpt),
        "data": data,
        "protocol": protocol,
        "backbone": cfg["backbone"]["name"],
        "random_init": bool(args.random_init),
        "pretraining_method": cfg["method"],
        "pretraining_step": checkpoint.get("global_step"),
    }


def _write(result: dict, args, run_dir: Path | None, data: str, protocol: str) -> Path:
    suffix = "_random_init" if args.random_init else ""
    base = run_dir if run_dir is not None else Path(args.ckpt).resolve().parent
    out = Path(args.out) if args.out else base / "eval" / f"{data}_{protocol}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if run_dir is not None and not args.random_init:
        with SummaryWriter(str(run_dir)) as writer:
            step = int(result.get("pretraining_step") or 0)
            for name, entry in result["protocols"].items():
                for metric, value in entry.items():  # top1/top5, or recall@K
                    if isinstance(value, float):
                        tag = name.replace(" ", "_").replace("=", "")
                        metric = metric.replace("@", "_at_")
                        writer.add_scalar(f"eval/{data}/{tag}/{metric}", value, step)
    for name, entry in result["protocols"].items():
        shown = {k: v for k, v in entry.items() if k != "settings"}
        print(f"{name:34s} {json.dumps(shown)}")
    print(f"wrote {out}")
    return out
