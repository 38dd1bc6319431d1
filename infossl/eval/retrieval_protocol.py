"""``eval_linear.py --protocol retrieval``: Recall@K on classes the backbone never saw.

The test set is the held-out half of the classes when the run trained with data.class_split
(the DML benchmarks: CUB 101-200, Cars 99-196, digits 5-9); otherwise the dataset's val split.
Every test image queries all the others (infossl/eval/retrieval.py), with cosine and L2
distances. The embedding is what the run's method retrieves with: for dml-* the backbone plus
the embedding head it trained (optional Linear / BatchNorm1d); for the SSL methods the backbone
features (their projector is discarded, as in every SSL evaluation).
Results: ``<run>/eval/<data>_retrieval_<checkpoint>.json`` (or ``_random_init``), labelled like
the linear probe's.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from infossl.data.class_split import class_split_dataset
from infossl.data.datasets import build_dataset, dataset_info
from infossl.data.nuisance import nuisance_dataset
from infossl.data.transforms import build_eval_transform
from infossl.errors import UserError
from infossl.eval.linear import extract_features
from infossl.eval.retrieval import DISTANCES, recall_at_k
from infossl.runtime import resolve_devices


def embedding_model(backbone: nn.Module, feature_dim: int, cfg: dict, head_state: dict | None):
    """(model, description): backbone, followed by the trained embedding head for dml-*
    (``head_state``: the checkpoint's ``projector`` weights); with ``head_state=None`` (a
    random-init baseline) the head is freshly initialised too (BatchNorm1d then is the identity)."""
    if not str(cfg.get("method", "")).startswith("dml-"):
        return backbone, "backbone features"
    from infossl.methods.dml import embedding_head

    head, _ = embedding_head(cfg["loss"], feature_dim)
    if head_state is not None:
        head.load_state_dict(head_state)
    head.to(next(backbone.parameters()).device)
    return nn.Sequential(backbone, head), "backbone + the method's embedding head (projector)"


def _test_set(cfg: dict, data: str, data_dir, transform, download: bool, loader):
    """(test set, what it is): training's validation set (data.class_split: the held-out
    classes). Under data.nuisance its images are tinted as training tinted them, with the val
    split's draw of s (nuisance_dataset), the tint before ``transform``."""
    info = dataset_info(data, data_dir)
    nuisance = cfg["data"].get("nuisance")
    base_transform = None if nuisance is not None else transform
    if cfg["data"].get("class_split"):
        split = "held-out classes (second half of the class indices)"
        test_set = class_split_dataset(
            data, data_dir, "test", info["num_classes"], base_transform, download, loader
        )
    else:
        split = "val split (all classes)"
        test_set = build_dataset(data, data_dir, "val", base_transform, download, loader)
    if nuisance is not None:
        test_set = nuisance_dataset(test_set, transform, "val", cfg["data"]["nuisance_values"])
    return test_set, split


def run_retrieval(
    args, backbone, feature_dim, device, settings, cfg, data, data_dir, head_state, image_loader
) -> dict:
    """Recall@K of every distance; the fields after the caller's result header (the caller,
    infossl/eval/offline.py, writes the JSON and TensorBoard tags as for the linear probe).
    ``head_state``: see :func:`embedding_model`; ``image_loader``: how folder images are read."""
    ks = sorted(set(args.recall_k))  # checked (>= 1) with the other flags
    info = dataset_info(data, data_dir)
    transform = build_eval_transform(cfg["data"]["image_size"], info["mean"], info["std"])
    test_set, split = _test_set(cfg, data, data_dir, transform, bool(args.download), image_loader)
    if len(test_set) <= ks[-1]:
        raise UserError(
            f"Recall@{ks[-1]} needs more than {ks[-1]} test images; the {split} has "
            f"{len(test_set)}: lower --recall-k"
        )
    model, embedding = embedding_model(backbone, feature_dim, cfg, head_state)
    precision = resolve_devices(
        {
            "accelerator": args.accelerator or "auto",
            "devices": 1,
            "precision": settings["precision"],
        },
        args.gpus,
    )["precision"]
    loader = DataLoader(
        test_set,
        batch_size=settings["batch_size"],
        shuffle=False,
        num_workers=settings["num_workers"],
        pin_memory=torch.cuda.is_available(),
    )
    started = time.time()
    z, y = extract_features(model, loader, device, precision, "test embeddings")
    protocols = {}
    for distance in DISTANCES:
        recalls = recall_at_k(z, y, ks, distance)
        protocols[f"retrieval {distance}"] = {
            **{f"recall@{k}": r for k, r in recalls.items()},
            "settings": {
                "distance": "cosine similarity of L2-normalised embeddings"
                if distance == "cosine"
                else "Euclidean distance of the raw embeddings",
                "queries": "every test image against all other test images (leave-one-out)",
                "search": "exact, pytorch-metric-learning CustomKNN",
            },
        }
    return {
        "test_split": split,
        "embedding": embedding,
        "embedding_dim": int(z.shape[1]),
        "num_test": len(y),
        "num_test_classes": int(torch.unique(y).numel()),
        "recall_k": ks,
        "protocols": protocols,
        "wall_time_s": round(time.time() - started, 1),
    }
