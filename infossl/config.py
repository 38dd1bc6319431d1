"""Configuration: YAML files in ``configs/`` merged in a fixed order, then CLI overrides.

Resolution order (later wins):
    configs/base.yaml                      every key, with its one default
    configs/data/<data>.yaml               dataset: image size, normalisation, augmentation preset
    configs/methods/<method>.yaml          method: projector, loss, optimizer
    configs/methods/<method>/<data>.yaml   the paper's hyper-parameters for that pair, if any
    configs/quick.yaml                     with --quick only: a small backbone, few epochs
    --config FILE                          a user file (e.g. a run's resolved config.yaml)
    CLI flags, then key=value overrides
After the files are merged the config is frozen in struct mode, so an unknown key in a user file
or an override is an error, never silently ignored. Then, before anything is written: every
``${...}`` is resolved once (``resolve_interpolations``), and ``validate`` checks the type and range
of every key against infossl/config_schema.py and the rules between keys; the method checks its
own ``loss`` section (``BaseMethod.check_config``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from infossl import config_schema as S
from infossl.errors import ConfigError

__all__ = ["ConfigError"]  # raised by everything here; defined in infossl.errors

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PRECISIONS = S.PRECISIONS


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    stat = path.stat()
    cfg = OmegaConf.create(copy.deepcopy(_parse(path.resolve(), stat.st_mtime_ns, stat.st_size)))
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not a list")
    return cfg


@functools.lru_cache(maxsize=256)
def _parse(path: Path, mtime_ns: int, size: int) -> dict | list:
    """A YAML file as plain containers (interpolations kept), parsed once per version of the
    file: resolving a config reads the same few files for every run and every check."""
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {path} is not a text (UTF-8) YAML file: byte {err.start} cannot be "
            "decoded; is it a binary file?"
        ) from err
    except RecursionError as err:
        # PyYAML builds a self-referencing structure from an anchor used inside itself
        # (a: &x [*x]); OmegaConf then recurses without end converting it.
        raise ConfigError(
            f"config file {path} refers to itself (a YAML anchor used inside its own value); "
            "write the values out"
        ) from err
    return OmegaConf.to_container(cfg, resolve=False)


def stored_config(path: str | Path) -> DictConfig:
    """A run's resolved config.yaml, over its method x dataset defaults: a run written before
    a key was added resumes with that key's default for its method (the model it trained)
    instead of failing on the missing key; base.yaml's defaults where the method or dataset
    is no longer known."""
    stored = load_yaml(path)
    method, data = OmegaConf.select(stored, "method"), OmegaConf.select(stored, "data.name")
    if method in available("methods") and data in available("data"):
        defaults = default_config(method, data)
    else:
        defaults = load_yaml(CONFIG_DIR / "base.yaml")
    return OmegaConf.merge(defaults, stored)


def available(kind: str) -> list[str]:
    """Names of the YAML files in configs/<kind>/ (data, methods, augmentations)."""
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))


def default_config(method: str, data: str, quick: bool = False) -> DictConfig:
    if method not in available("methods"):
        raise ConfigError(
            f"unknown method '{method}'; choose one of: {', '.join(available('methods'))}"
        )
    if data not in available("data"):
        raise ConfigError(
            f"unknown dataset '{data}'; choose one of: {', '.join(available('data'))}"
        )
    layers = [
        CONFIG_DIR / "base.yaml",
        CONFIG_DIR / "data" / f"{data}.yaml",
        CONFIG_DIR / "methods" / f"{method}.yaml",
    ]
    pair = CONFIG_DIR / "methods" / method / f"{data}.yaml"
    if pair.is_file():
        layers.append(pair)
    if quick:
        layers.append(CONFIG_DIR / "quick.yaml")
    cfg = OmegaConf.merge(*(load_yaml(p) for p in layers))
    cfg.method = method
    cfg.data.name = data
    return cfg


def _strict_merge(cfg: DictConfig, other: DictConfig | dict, source: str) -> DictConfig:
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, other)
    except ConfigKeyError as err:
        key = getattr(err, "full_key", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"unknown config key '{key}' in {source}; see configs/base.yaml for the valid keys"
        ) from err
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(
            f"cannot merge {source} at key '{key}': {str(err).splitlines()[0]}"
        ) from err


def merge_file(cfg: DictConfig, path: str | Path) -> DictConfig:
    return _strict_merge(cfg, load_yaml(path), str(path))


def merge_values(cfg: DictConfig, values: dict, source: str = "the command line") -> DictConfig:
    return _strict_merge(cfg, OmegaConf.create(values), source)


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    """Turn ``["optimizer.lr=0.3", "loss.temperature=0.1"]`` into a nested config."""
    items = list(overrides)
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key or key != key.strip() or " " in key:
            raise ConfigError(
                f"malformed override '{item}'; write key=value, e.g. optimizer.lr=0.3"
            )
    try:
        return OmegaConf.from_dotlist(items)
    except OmegaConfBaseException as err:
        raise ConfigError(f"malformed override in {items}: {str(err).splitlines()[0]}") from err


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    items = list(overrides)
    if not items:
        return cfg
    return _strict_merge(cfg, parse_overrides(items), f"override {' '.join(items)}")


def resolve_views(cfg: DictConfig) -> DictConfig:
    """Fill ``data.views`` from configs/augmentations/<data.augmentation>.yaml when unset."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or data.get("views") is not None:
        return cfg  # a malformed section is reported by validate
    name = data.get("augmentation")
    if not isinstance(name, str):
        S.check(name, str, "data.augmentation")
    path = CONFIG_DIR / "augmentations" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown augmentation '{name}'; choose one of: {', '.join(available('augmentations'))}"
        )
    views = OmegaConf.load(path)
    if not isinstance(views, ListConfig):
        raise ConfigError(f"{path} must be a YAML list of view settings")
    cfg.data.views = views
    return cfg


def regularizer_defaults(name: str) -> dict:
    """Every key of a ``regularizers`` entry named ``name`` with its default:
    configs/regularizers/<name>.yaml (``name`` one of ``config_schema.REGULARIZER_NAMES``)."""
    return OmegaConf.to_container(load_yaml(CONFIG_DIR / "regularizers" / f"{name}.yaml"))


def normalize_regularizers(cfg: DictConfig) -> DictConfig:
    """Give every ``regularizers`` entry all its keys: the ones given, then the defaults of
    configs/regularizers/<name>.yaml (values are checked by the schema).

    YAML 1.1 (PyYAML, hence OmegaConf, both in files and in ``key=value`` overrides) reads a
    bare ``on`` as the boolean True, so ``{name: knife_entropy, on: embeddings}`` arrives as
    ``{True: 'embeddings'}``; the key a user wrote is restored here, once, for all callers.
    """
    entries = _resolved(cfg.regularizers, "regularizers")
    if not isinstance(entries, list):
        S.check(entries, list[S.Regularizer], "regularizers")
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            if True in entry:
                entry["on"] = entry.pop(True)
            if entry.get("name") in S.REGULARIZER_NAMES:  # an unknown name: the schema's line
                entries[i] = {**regularizer_defaults(entry["name"]), **entry}
    cfg.regularizers = entries
    return cfg


def _resolved(node, where: str):
    """``node`` as plain Python with every ``${...}`` interpolation resolved, or one line."""
    try:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or where
        raise ConfigError(
            f"config key {key}: cannot resolve its interpolation ({str(err).splitlines()[0]}); "
            "write the value itself"
        ) from err


def resolve_interpolations(cfg: DictConfig) -> DictConfig:
    """Replace every ``${...}`` by its value, once, so that the run's config.yaml, the
    checks and the run all see the same values (an unset ``${oc.env:VAR}`` fails here)."""
    return OmegaConf.create(_resolved(cfg, "the config"))


def validate(cfg: DictConfig | dict) -> None:
    """Types and ranges of every key (infossl/config_schema.py), then the checks that need
    several keys. Each failure is one actionable line; nothing here touches the disk."""
    plain = _resolved(cfg, "the config")
    S.check(plain, S.Config, "")
    d, t = plain["data"], plain["trainer"]
    if d["batch_size"] < 2:
        raise ConfigError(
            f"batch size {d['batch_size']} is too small: contrastive and covariance losses "
            "need at least 2 samples per device; use --batch-size 2 or more"
        )
    if t["stop_after_epoch"] is not None and t["stop_after_epoch"] > t["epochs"]:
        raise ConfigError(
            f"trainer.stop_after_epoch={t['stop_after_epoch']} is after the last epoch "
            f"(trainer.epochs={t['epochs']})"
        )
    if d["class_split"] and not str(plain["method"]).startswith("dml-"):
        raise ConfigError(
            "data.class_split=true trains on half of the classes and validates on the others, "
            "which only the metric-learning methods (dml-ce, dml-pairwise) evaluate; drop it "
            f"for --method {plain['method']}"
        )
    _check_nuisance(plain)
    if plain["training"]["skip_nonfinite"] > 0 and t["devices"] * t["num_nodes"] > 1:
        # One process skipping a batch alone would leave its peers waiting in the gradient
        # all-reduce; agreeing would cost a collective every step (infossl/reliability/
        # nonfinite.py).
        raise ConfigError(
            "training.skip_nonfinite > 0 works on one process only; under DDP keep "
            "training.skip_nonfinite=0 (a NaN loss stops the run naming the last checkpoint)"
        )


def _check_nuisance(plain: dict) -> None:
    """data.nuisance and the regularizers that read it (``nuisance: data``) agree."""
    d = plain["data"]
    if d["nuisance"] is not None and d["name"] == "folder":
        raise ConfigError(
            f"data.nuisance={d['nuisance']} is not available for --data folder (it tints "
            "digits, CIFAR and STL-10 images); drop it or use another dataset"
        )
    for i, entry in enumerate(plain["regularizers"]):
        if entry.get("nuisance") != "data":
            continue
        key = f"regularizers[{i}]"
        if d["nuisance"] is None:
            raise ConfigError(
                f"{key}: nuisance: data needs a dataset nuisance, and data.nuisance is null; "
                "set data.nuisance=tint, or use nuisance: label"
            )
        if entry["num_classes"] is not None and entry["num_classes"] < d["nuisance_values"]:
            raise ConfigError(
                f"{key}.num_classes={entry['num_classes']} is fewer than the "
                f"data.nuisance_values={d['nuisance_values']} values of the nuisance; "
                "leave num_classes out (it defaults to them)"
            )


def method_loss_defaults(method: str) -> dict:
    """The ``loss`` section of configs/methods/<method>.yaml: the keys that method takes and
    the type of each (their defaults' types)."""
    cfg = load_yaml(CONFIG_DIR / "methods" / f"{method}.yaml")
    return OmegaConf.to_container(cfg.get("loss", OmegaConf.create({})))


def check_like(values, defaults, key: str) -> None:
    """``values`` has the shape and scalar types of ``defaults`` (a method YAML's section):
    numbers stay finite numbers, an integer default takes integers, booleans booleans,
    strings strings, mappings the same keys."""
    if isinstance(defaults, dict):
        if not isinstance(values, dict):
            S.check(values, dict, key)
        for name, value in values.items():
            if name not in defaults:
                raise ConfigError(f"unknown config key '{key}.{name}'")
            check_like(value, defaults[name], f"{key}.{name}")
        return
    if isinstance(defaults, list):
        if not isinstance(values, list):
            raise ConfigError(f"{key}={values!r} is not valid: it must be a list")
        return
    kind = {bool: bool, int: int, float: float, str: str}.get(type(defaults))
    if defaults is None or kind is None:
        return  # a null default: any value (the method's own check decides)
    S.check(values, kind, key)


def flat_keys(tree, prefix: str = "") -> dict:
    """``{"data.image_size": 32, ...}``: the leaves of nested mappings by dotted key."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(flat_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def to_plain(cfg: DictConfig) -> dict:
    """A plain dict (checkpoints hold only plain Python types: weights_only loading)."""
    return OmegaConf.to_container(cfg, resolve=True)
