"""The type and range of every config key, checked in one pass before anything is written.

The schema mirrors ``configs/base.yaml`` section by section as dataclasses whose annotations are
the only source of what a value may be: ``int``, ``float`` (any finite number), ``bool``,
``str``, ``Literal[...]`` (a closed set of names), ``X | None``, ``list[X]``, a nested dataclass
(a section, or a mapping of known keys such as an augmentation view), ``dict`` (checked
elsewhere: the per-method ``loss`` section), and ``Annotated[X, Ge(1), ...]`` for ranges and
lengths. The dataclasses hold no defaults: every default lives once, in base.yaml, or for a
regularizer entry in configs/regularizers/<name>.yaml (tests/test_config.py checks both hold
the same keys). A key marked ``Optional()`` may be absent (an augmentation view's
``crop_ratio``, a knife_mi key in a knife_entropy entry).

``check(value, schema, key)`` raises ``ConfigError`` with one line naming the first bad key,
what it holds and what it must be, e.g. ``optimizer.lr='abc' is not valid: it must be a
number > 0``. Method-specific checks (the loss section) live beside each method
(``BaseMethod.check_config``); checks between keys live in ``infossl.config.validate``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from infossl.errors import ConfigError

# numpy.random.seed (Lightning's seed_everything seeds it) takes 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


# ---- constraints -------------------------------------------------------------------------
def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class Ge:
    bound: float

    def ok(self, v) -> bool:
        return v >= self.bound

    def text(self) -> str:
        return f">= {_num(self.bound)}"


@dataclass(frozen=True)
class Gt(Ge):
    def ok(self, v) -> bool:
        return v > self.bound

    def text(self) -> str:
        return f"> {_num(self.bound)}"


@dataclass(frozen=True)
class Le(Ge):
    def ok(self, v) -> bool:
        return v <= self.bound

    def text(self) -> str:
        return f"<= {_num(self.bound)}"


@dataclass(frozen=True)
class Lt(Ge):
    def ok(self, v) -> bool:
        return v < self.bound

    def text(self) -> str:
        return f"< {_num(self.bound)}"


@dataclass(frozen=True)
class Len:
    """Exact length (``n``) or at least ``min`` items of a list."""

    n: int | None = None
    min: int = 0

    def ok(self, v) -> bool:
        return len(v) == self.n if self.n is not None else len(v) >= self.min

    def text(self) -> str:
        return f"with {self.n} items" if self.n is not None else f"with at least {self.min} item"


@dataclass(frozen=True)
class Optional:
    """The key may be left out of its mapping."""


Prob = Annotated[float, Ge(0), Le(1)]
Count = Annotated[int, Ge(1)]
Seed = Annotated[int, Ge(0), Le(MAX_SEED)]
Auto = Literal["auto"]
DatasetName = Literal["cifar10", "cifar100", "stl10", "folder", "digits"]
RecallK = Annotated[list[Count], Len(min=1)]


# ---- base.yaml ---------------------------------------------------------------------------
@dataclass
class View:
    """One augmented view (configs/augmentations/*.yaml, infossl/data/transforms.py)."""

    crop_scale: Annotated[list[Annotated[float, Gt(0), Le(1)]], Len(2)]
    crop_interpolation: Literal["bicubic", "bilinear"]
    hflip_p: Prob
    jitter: Annotated[list[Annotated[float, Ge(0)]], Len(4)]
    jitter_p: Prob
    grayscale_p: Prob
    blur_p: Prob
    blur_sigma: Annotated[list[Annotated[float, Gt(0)]], Len(2)]
    solarize_p: Prob
    crop_ratio: Annotated[list[Annotated[float, Gt(0)]], Len(2), Optional()]


@dataclass
class Data:
    name: DatasetName
    dir: str
    download: bool
    image_size: Count
    batch_size: Count  # >= 2 checked with its reason in config.validate
    num_workers: Annotated[int, Ge(0)] | Literal["auto"]
    augmentation: str  # a file name, checked by config.resolve_views
    views: Annotated[list[View], Len(min=1)]
    train_fraction: Annotated[float, Gt(0)]  # a fraction (<= 1) or a count of images (> 1)
    on_bad_image: Literal["skip", "error"]
    augment_on: Literal["auto", "cpu", "gpu"]
    pin_memory: Auto | bool
    persistent_workers: bool
    prefetch_factor: Auto | Count
    class_split: bool
    sampler: Literal["random", "m_per_class"]
    m_per_class: Count
    nuisance: Literal["tint"] | None
    nuisance_values: Annotated[int, Ge(2), Le(6)]  # infossl/data/nuisance.py: 6 tints


@dataclass
class Backbone:
    name: str  # resnet18|34|50, timm:NAME, lightly:resnet-N: checked by building it
    small_images: Auto | bool
    zero_init_residual: bool
    width: Annotated[float, Gt(0)]
    pretrained: bool
    freeze_bn: bool


@dataclass
class Projector:
    hidden_dim: Count
    output_dim: Count
    num_layers: Count
    batch_norm: bool
    last_bias: bool


@dataclass
class Optimizer:
    name: Literal["sgd", "lars", "adamw"]
    lr: Annotated[float, Gt(0)]
    momentum: Annotated[float, Ge(0), Lt(1)]
    weight_decay: Annotated[float, Ge(0)]
    betas: Annotated[list[Annotated[float, Ge(0), Lt(1)]], Len(2)]
    warmup_epochs: Annotated[int, Ge(0)]
    warmup_steps: Annotated[int, Ge(0)]
    warmup_start_lr: Annotated[float, Ge(0)]
    min_lr: Annotated[float, Ge(0)]
    classifier_lr: Annotated[float, Ge(0)]


PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")


@dataclass
class Trainer:
    epochs: Count
    accelerator: Literal["auto", "cpu", "gpu", "cuda"]
    devices: Count
    num_nodes: Count
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed", 32]
    sync_batchnorm: bool
    log_every_n_steps: Count
    deterministic: bool
    ddp_timeout_s: Annotated[float, Gt(0)]
    stop_after_epoch: Count | None
    channels_last: Auto | bool
    compile: bool
    compile_backend: str
    cudnn_benchmark: Auto | bool


@dataclass
class Checkpoint:
    every_n_epochs: Count


@dataclass
class Diagnostics:
    every_n_epochs: Annotated[int, Ge(0)]
    num_samples: Annotated[int, Ge(2)]
    collapse_fraction: Prob
    knife_entropy: bool


@dataclass
class Training:
    skip_nonfinite: Annotated[int, Ge(0)]
    inject_nan_at_steps: list[Annotated[int, Ge(0)]]


REGULARIZER_NAMES = ("knife_entropy", "knife_mi")
OnlyMI = Optional()  # a knife_mi key, absent from knife_entropy's defaults


@dataclass
class Regularizer:
    """One ``regularizers`` entry (infossl/losses/knife_regularizer.py), its keys filled from
    configs/regularizers/<name>.yaml (``config.normalize_regularizers``): every key is there,
    with its default and what it does."""

    name: Literal["knife_entropy", "knife_mi"]
    on: Literal["embeddings", "features"]
    weight: Annotated[float, Ge(0)]
    direction: Literal["maximize", "minimize"]
    standardize: bool
    dim: Count | None
    modes: Count
    full_covariance: Auto | bool
    use_tanh: bool
    init_std: Annotated[float, Gt(0)]
    scale_init_from_data: bool
    fit_steps: Count
    lr: Annotated[float, Gt(0)]
    betas: Annotated[list[Annotated[float, Ge(0), Lt(1)]], Len(2)]
    nuisance: Annotated[Literal["label", "data"], OnlyMI]
    num_classes: Annotated[Annotated[int, Ge(2)] | None, OnlyMI]
    nuisance_dim: Annotated[Count | None, OnlyMI]
    conditional_modes: Annotated[Count | None, OnlyMI]
    conditional_full_covariance: Annotated[Auto | bool, OnlyMI]
    hidden_dim: Annotated[Count | None, OnlyMI]
    layer_norm: Annotated[bool, OnlyMI]


@dataclass
class Config:
    method: str  # a configs/methods/<name>.yaml, checked by config.default_config
    seed: Seed
    data: Data
    backbone: Backbone
    projector: Projector
    loss: dict  # per method: BaseMethod.check_config against the method's YAML
    optimizer: Optimizer
    trainer: Trainer
    checkpoint: Checkpoint
    diagnostics: Diagnostics
    training: Training
    regularizers: list[Regularizer]


@dataclass
class LinearEval:
    """configs/eval/linear.yaml and eval_linear.py's flags."""

    epochs: Count
    batch_size: Count
    lr: Annotated[float, Gt(0)]
    momentum: Annotated[float, Ge(0), Lt(1)]
    weight_decay: Annotated[float, Ge(0)]
    min_lr: Annotated[float, Ge(0)]
    feature_norm: Literal["batchnorm", "none"]
    augment: Literal["none", "crop-flip"]
    knn_k: Annotated[list[Count], Len(min=1)]
    knn_temperature: Annotated[float, Gt(0)]
    embedding_map_points: Count
    num_workers: Annotated[int, Ge(0)] | Literal["auto"]
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed", 32]
    seed: Seed


# ---- the checker -------------------------------------------------------------------------
def _split(annotation) -> tuple[Any, list]:
    """(base type, constraints) of a possibly Annotated type."""
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        inner, more = _split(base)
        return inner, more + list(extra)
    return annotation, []


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def describe(annotation) -> str:
    """What a value of this type must be, in words."""
    tp, constraints = _split(annotation)
    ranges = " and ".join(c.text() for c in constraints if isinstance(c, Ge))
    lengths = " ".join(c.text() for c in constraints if isinstance(c, Len))
    if _is_union(tp):
        text = " or ".join(describe(a) for a in typing.get_args(tp))
    elif typing.get_origin(tp) is Literal:
        names = [a for a in typing.get_args(tp) if isinstance(a, str)]
        text = "one of " + ", ".join(names) if len(names) > 1 else names[0]
    elif tp is type(None):
        text = "null"
    elif tp is bool:
        text = "true or false"
    elif tp is int:
        text = "an integer"
    elif tp is float:
        text = "a number"
    elif tp is str:
        text = "a string"
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return f"a list of {describe(item)}" + (f" ({lengths})" if lengths else "")
    elif dataclasses.is_dataclass(tp) or tp is dict:
        text = "a mapping of keys"
    else:
        text = str(tp)
    return f"{text} {ranges}" if ranges else text


def _fail(key: str, value, annotation) -> None:
    shown = repr(value) if not isinstance(value, Mapping | list) else type(value).__name__
    raise ConfigError(f"{key}={shown} is not valid: it must be {describe(annotation)}")


def _matches(value, tp) -> bool:
    """Whether ``value`` has the base type ``tp`` (no constraints, no containers)."""
    if typing.get_origin(tp) is Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    return False


def check(value, annotation, key: str, partial: bool = False) -> None:
    """Raise ``ConfigError`` for the first key of ``value`` that does not fit ``annotation``
    (``partial``: mappings may lack keys and hold others, see ``check_mapping``)."""
    tp, constraints = _split(annotation)
    if _is_union(tp):
        for option in typing.get_args(tp):
            try:
                check(value, option, key, partial)
                return
            except ConfigError:
                continue
        _fail(key, value, annotation)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            _fail(key, value, annotation)
        check_mapping(value, tp, key, partial)
    elif tp is dict:
        if not isinstance(value, Mapping):
            _fail(key, value, annotation)
    elif typing.get_origin(tp) is list:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            _fail(key, value, annotation)
        for c in constraints:
            if isinstance(c, Len) and not c.ok(value):
                _fail(key, value, annotation)
        (item,) = typing.get_args(tp)
        for i, v in enumerate(value):
            check(v, item, f"{key}[{i}]", partial)
    elif not _matches(value, tp):
        _fail(key, value, annotation)
    for c in constraints:
        if isinstance(c, Ge) and not c.ok(value):
            _fail(key, value, annotation)


def check_mapping(values: Mapping, schema: type, prefix: str = "", partial: bool = False) -> None:
    """Every field of ``schema`` in ``values``; unknown keys are errors. ``partial``: check only
    the keys present (stricter rules over keys a generic check already typed)."""
    fields = {f.name: f.type for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema, include_extras=True)
    dot = f"{prefix}." if prefix else ""
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown and not partial:
        raise ConfigError(
            f"unknown key {dot}{unknown[0]}; {prefix or 'the config'} takes {', '.join(fields)}"
        )
    for name in fields:
        annotation = hints[name]
        if name not in values:
            if partial or any(isinstance(c, Optional) for c in _split(annotation)[1]):
                continue
            raise ConfigError(f"{dot}{name} is missing; see configs/base.yaml")
        check(values[name], annotation, f"{dot}{name}", partial)


def leaves(schema: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, annotation) of every scalar or list key of a section dataclass, for tests
    that try a wrong value for each key."""
    out = []
    hints = typing.get_type_hints(schema, include_extras=True)
    for f in dataclasses.fields(schema):
        tp, _ = _split(hints[f.name])
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out += leaves(tp, f"{key}.")
        else:
            out.append((key, hints[f.name]))
    return out
