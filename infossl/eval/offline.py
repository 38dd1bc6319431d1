"""``eval_linear.py``: what a pretrained backbone learned, measured three labelled ways.

- "offline linear probe": a linear layer trained on the frozen backbone (configs/eval/linear.yaml);
- "kNN k=20" / "kNN k=200": weighted kNN on the same frozen features;
- "online probe during pretraining": the number train.py logged as val/online_top1 (read back
  from the run's metrics.json), reported beside the others and never confused with them;
- "nuisance probe", only when the run trained with ``data.nuisance``: the same linear probe on
  the same features, trained to tell the nuisance s instead of the label. It is the leakage
  measure of KNIFE's fair-representation experiments (Pichler et al., ICML 2022; g-pichler/knife):
  how much of s a linear probe still reads from the representation, beside its chance level.
Under ``data.nuisance`` every split is tinted as training tinted it (``nuisance_dataset``), so the
probes see the images the backbone was trained on.
Results go to ``<run>/eval/<data>_linear_<checkpoint>.json`` (named after the checkpoint file,
so two checkpoints of one run never overwrite each other's results; ``_random_init`` for the
baseline) and the run's TensorBoard under ``eval/``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from infossl import config as C
from infossl import config_schema as S
from infossl.backbones import build_backbone
from infossl.data.datasets import build_dataset, dataset_info
from infossl.data.nuisance import nuisance_dataset
from infossl.data.transforms import build_crop_flip_transform, build_eval_transform
from infossl.errors import UserError
from infossl.eval import diagnostics
from infossl.eval.embedding_map import embedding_maps
from infossl.eval.knn import knn_top1
from infossl.eval.linear import extract_features, train_linear_probe, train_linear_probe_on_images
from infossl.eval.retrieval_protocol import run_retrieval
from infossl.eval.settings import eval_settings
from infossl.reliability.checkpoint_io import load_checkpoint_safely
from infossl.reliability.safe_images import SafeImageLoader
from infossl.rundir import run_dir_of_checkpoint
from infossl.runtime import resolve_devices, resolve_num_workers


def _eval_settings(args) -> dict:
    settings = eval_settings(args)
    settings["num_workers"] = resolve_num_workers(settings["num_workers"], 1)
    return settings


# What building the backbone and its input pipeline needs from the training config.
REQUIRED_KEYS = ("method", "data.name", "data.dir", "data.image_size", "backbone.name")


def _checked_training_config(ckpt_path: str, checkpoint: dict) -> dict:
    """The checkpoint's training config, complete (keys added after it was written take their
    base.yaml defaults) and valid where evaluation uses it, or one line saying what is wrong."""
    cfg = checkpoint.get("hyper_parameters", {}).get("cfg")
    if not isinstance(cfg, dict) or "backbone" not in cfg:
        raise UserError(
            f"{ckpt_path} is a checkpoint but not one written by train.py "
            "(it has no hyper_parameters.cfg)"
        )
    flat = C.flat_keys(cfg)
    missing = [k for k in REQUIRED_KEYS if k not in flat]
    if missing:
        raise UserError(
            f"{ckpt_path}: its hyper_parameters.cfg is incomplete (no {', '.join(missing)}); "
            "evaluate a checkpoint written by train.py"
        )
    base = C.to_plain(C.load_yaml(C.CONFIG_DIR / "base.yaml"))
    cfg = {**base, **cfg}
    for section in ("data", "backbone"):
        if not isinstance(cfg[section], dict):
            raise UserError(f"{ckpt_path}: its hyper_parameters.cfg.{section} is not a mapping")
        cfg[section] = {**base[section], **cfg[section]}
    try:
        S.check_mapping(cfg["backbone"], S.Backbone, "backbone")
        S.check(cfg["data"]["image_size"], S.Count, "data.image_size")
        S.check(cfg["data"]["name"], S.DatasetName, "data.name")
        nuisance = {k: cfg["data"][k] for k in ("nuisance", "nuisance_values")}
        S.check_mapping(nuisance, S.Data, "data", partial=True)
    except C.ConfigError as err:
        raise UserError(f"{ckpt_path}: its training config is unusable: {err}") from err
    return cfg


def load_pretrained(ckpt_path: str, random_init: bool = False, seed: int = 0):
    """(backbone, feature_dim, training config, checkpoint) from a train.py checkpoint; with
    ``random_init`` the same architecture, freshly initialised from ``seed``."""
    checkpoint = load_checkpoint_safely(ckpt_path)
    cfg = _checked_training_config(ckpt_path, checkpoint)
    b = cfg["backbone"]
    torch.manual_seed(seed)
    backbone, dim = build_backbone(
        b["name"], cfg["data"]["image_size"], b["small_images"], b["zero_init_residual"], b["width"]
    )
    if not random_init:
        try:
            backbone.load_state_dict(submodule_state(checkpoint, "backbone"))
        except (RuntimeError, KeyError, AttributeError) as err:
            first = " ".join(str(err).split())[:300]
            raise UserError(
                f"{ckpt_path}: its backbone weights do not match its config "
                f"(backbone {b['name']}, width {b['width']}): {first}"
            ) from err
    return backbone, dim, cfg, checkpoint


def eval_image_loader(data: str):
    """Folder datasets: an unreadable image stops the evaluation naming the file (a skipped
    image would change the test set the numbers are about)."""
    fix = "remove or fix it; evaluation uses every image of the split"
    return SafeImageLoader("error", fix=fix) if data == "folder" else None


def submodule_state(checkpoint: dict, name: str) -> dict:
    """The state dict of the LightningModule's child ``name`` from a checkpoint."""
    prefix = f"{name}."
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise KeyError("the checkpoint has no state_dict")
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _online_probe_number(run_dir: Path | None) -> float | None:
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text()).get("metrics", {})
    return metrics.get("val/online_top1")


def eval_dataset(cfg: dict, data: str, data_dir, split: str, transform, download, loader):
    """A split of ``data`` for evaluation: its (image, label) items, or, when the run trained
    with ``data.nuisance``, its images tinted as training tinted them (the tint before
    ``transform``; items ``(image, label, 0, s)``, and ``.nuisance`` holds s per index)."""
    d = cfg["data"]
    if d["nuisance"] is None:
        return build_dataset(data, data_dir, split, transform, download, loader)
    base = build_dataset(data, data_dir, split, None, download, loader)
    return nuisance_dataset(base, transform, split, d["nuisance_values"])


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
    check_writable(result_path(args, run_dir, data, args.protocol), bool(args.out))
    if args.protocol == "retrieval":
        head_state = None if args.random_init else submodule_state(checkpoint, "projector")
        result = {
            **result_header(args, cfg, checkpoint, data, "retrieval"),
            **run_retrieval(
                args,
                backbone,
                feature_dim,
                device,
                settings,
                cfg,
                data,
                data_dir,
                head_state,
                eval_image_loader(data),
            ),
        }
        _write(result, args, run_dir, data, "retrieval")
        return result
    size = cfg["data"]["image_size"]
    eval_tf = build_eval_transform(size, info["mean"], info["std"])
    download = bool(args.download)
    loader = eval_image_loader(data)
    train_set = eval_dataset(cfg, data, data_dir, "train_labeled", eval_tf, download, loader)
    val_set = eval_dataset(cfg, data, data_dir, "val", eval_tf, download, loader)

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
        augmented = eval_dataset(cfg, data, data_dir, "train_labeled", crop_flip, download, loader)
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
    if cfg["data"]["nuisance"] is not None:
        protocols["nuisance probe"] = _nuisance_probe(
            cfg, train_x, train_set, val_x, val_set, probe_settings, device
        )

    result = {
        **result_header(args, cfg, checkpoint, data, "linear"),
        "num_train": len(train_y),
        "num_val": len(val_y),
        "protocols": protocols,
        "diagnostics": diagnostics.metrics(val_x),
        "wall_time_s": round(time.time() - started, 1),
    }
    out = result_path(args, run_dir, data, "linear")
    result["embedding_maps"] = embedding_maps(
        val_x,
        val_y,
        out.parent,
        out.stem,
        log_dir=run_dir if run_dir is not None and not args.random_init else None,
        step=int(checkpoint.get("global_step") or 0),
        max_points=settings["embedding_map_points"],
        seed=settings["seed"],
    )
    _write(result, args, run_dir, data, "linear")
    return result


def _nuisance_probe(cfg, train_x, train_set, val_x, val_set, probe_settings, device) -> dict:
    """The linear probe of the label, trained on the same frozen features to tell s instead
    (train split's features -> s, scored on the val split's): KNIFE's leakage measure of how
    much of the nuisance a representation still carries. The loaders are unshuffled, so the
    features are in dataset order, the order of each dataset's ``.nuisance``."""
    num_values = cfg["data"]["nuisance_values"]
    train_s, val_s = train_set.nuisance, val_set.nuisance
    if len(train_s) != len(train_x) or len(val_s) != len(val_x):
        raise RuntimeError("features and nuisance values are not aligned")
    probe = train_linear_probe(
        train_x, train_s, val_x, val_s, num_values, device=device, **probe_settings
    )
    return {
        "top1": probe["top1"],
        "chance": 1.0 / num_values,
        "settings": {
            **probe_settings,
            "target": f"s of data.nuisance={cfg['data']['nuisance']} ({num_values} values, "
            "drawn per image independently of the label)",
            "augment": "none",
            "optimizer": "SGD, cosine schedule, frozen backbone in eval mode",
        },
    }


def result_header(args, cfg: dict, checkpoint: dict, data: str, protocol: str) -> dict:
    """The fields every evaluation JSON starts with: what was evaluated, and how. A random-init
    baseline was pretrained by nothing: its pretraining fields are null, and
    ``architecture_from`` names the checkpoint whose architecture it rebuilt."""
    header = {
        "checkpoint": str(args.ckpt),
        "data": data,
        "protocol": protocol,
        "backbone": cfg["backbone"]["name"],
        "random_init": bool(args.random_init),
        "pretraining_method": cfg["method"],
        "pretraining_step": checkpoint.get("global_step"),
    }
    if args.random_init:
        header["architecture_from"] = {
            "checkpoint": str(args.ckpt),
            "method": header.pop("pretraining_method"),
            "step": header.pop("pretraining_step"),
            "backbone": cfg["backbone"]["name"],
            "width": cfg["backbone"]["width"],
        }
        header["pretraining_method"] = header["pretraining_step"] = None
    return header


def result_path(args, run_dir: Path | None, data: str, protocol: str) -> Path:
    """``--out``, or ``<run>/eval/<data>_<protocol>_<checkpoint name>.json`` (the random-init
    baseline, the same for every checkpoint of a run: ``<data>_<protocol>_random_init.json``)."""
    if args.out:
        return Path(args.out)
    suffix = "_random_init" if args.random_init else f"_{Path(args.ckpt).stem}"
    base = run_dir if run_dir is not None else Path(args.ckpt).resolve().parent
    return base / "eval" / f"{data}_{protocol}{suffix}.json"


def check_writable(out: Path, given: bool) -> None:
    """Refuse, before any evaluation runs, a result path that cannot be written."""
    what = f"--out {out}" if given else f"the results file {out}"
    if out.is_dir():
        raise UserError(f"{what} is a directory; give a file path")
    existing = out.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} cannot be written: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"{what} cannot be written (no permission in {existing}); choose another")


def _write(result: dict, args, run_dir: Path | None, data: str, protocol: str) -> Path:
    out = result_path(args, run_dir, data, protocol)
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
        shown = {  # the JSON keeps full precision
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in entry.items()
            if k != "settings"
        }
        print(f"{name:34s} {json.dumps(shown)}")
    print(f"wrote {out}")
    return out
