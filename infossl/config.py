"""Configuration: YAML files in ``configs/`` merged in a fixed order, then CLI overrides.

Resolution order (later wins):
    configs/base.yaml                      every key, with its one default
    configs/data/<data>.yaml               dataset: image size, normalisation, augmentation preset
    configs/methods/<method>.yaml          method: projector, loss, optimizer
    configs/methods/<method>/<data>.yaml   the paper's hyper-parameters for that pair, if any
    --config FILE                          a user file (e.g. a run's resolved config.yaml)
    CLI flags, then key=value overrides
After the files are merged the config is frozen in struct mode, so an unknown key in a user file
or an override is an error, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line that says how to fix it."""


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not a list")
    return cfg


def stored_config(path: str | Path) -> DictConfig:
    """A run's resolved config.yaml, over base.yaml: a run written before a key was added
    resumes with that key's default instead of failing on the missing key."""
    return OmegaConf.merge(load_yaml(CONFIG_DIR / "base.yaml"), load_yaml(path))


def available(kind: str) -> list[str]:
    """Names of the YAML files in configs/<kind>/ (data, methods, augmentations)."""
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))


def default_config(method: str, data: str) -> DictConfig:
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
    cfg = OmegaConf.merge(*(load_yaml(p) for p in layers))
    cfg.method = method
    cfg.data.name = data
    return cfg


def _strict_merge(cfg: DictConfig, other: DictConfig | dict, source: str) -> DictConfig:
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, other)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"unknown config key '{key}' in {source}; see configs/base.yaml for the valid keys"
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
    if cfg.data.views is not None:
        return cfg
    name = cfg.data.augmentation
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


REGULARIZER_NAMES = ("knife_entropy", "knife_mi")
REGULARIZER_TARGETS = ("embeddings", "features")


def normalize_regularizers(cfg: DictConfig) -> DictConfig:
    """Give every ``regularizers`` entry a string ``on`` key, and check where it points.

    YAML 1.1 (PyYAML, hence OmegaConf, both in files and in ``key=value`` overrides) reads a
    bare ``on`` as the boolean True, so ``{name: knife_entropy, on: embeddings}`` arrives as
    ``{True: 'embeddings'}``; the key a user wrote is restored here, once, for all callers.
    """
    entries = []
    for entry in OmegaConf.to_container(cfg.regularizers, resolve=True):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(
                f"regularizer {entry!r} must be a mapping with a name, e.g. "
                "{name: knife_entropy, on: embeddings, weight: 0.1}"
            )
        if True in entry:
            entry["on"] = entry.pop(True)
        entry.setdefault("on", "embeddings")
        if entry["name"] not in REGULARIZER_NAMES:
            raise ConfigError(
                f"unknown regularizer '{entry['name']}'; use one of {', '.join(REGULARIZER_NAMES)}"
            )
        if entry["name"] == "knife_mi" and (
            entry.get("nuisance", "label") != "label" or not entry.get("num_classes")
        ):
            raise ConfigError(
                "regularizer knife_mi: the nuisance is the batch's labels (nuisance: label) and "
                "needs num_classes, e.g. {name: knife_mi, nuisance: label, num_classes: 10}"
            )
        if entry["on"] not in REGULARIZER_TARGETS:
            raise ConfigError(
                f"regularizer {entry['name']}: on={entry['on']!r}; use one of "
                f"{', '.join(REGULARIZER_TARGETS)}"
            )
        entries.append(entry)
    cfg.regularizers = entries
    return cfg


def validate(cfg: DictConfig) -> None:
    """Checks that need the whole config; each failure is one actionable line."""
    if cfg.data.batch_size < 2:
        raise ConfigError(
            f"batch size {cfg.data.batch_size} is too small: contrastive and covariance losses "
            "need at least 2 samples per device; use --batch-size 2 or more"
        )
    if str(cfg.trainer.precision) not in PRECISIONS:
        raise ConfigError(
            f"unknown precision '{cfg.trainer.precision}'; choose one of: {', '.join(PRECISIONS)}"
        )
    if cfg.trainer.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {cfg.trainer.epochs}")
    if cfg.checkpoint.every_n_epochs < 1:
        raise ConfigError("checkpoint.every_n_epochs must be at least 1")
    from infossl.speed import check_speed_config  # imports ConfigError from here

    check_speed_config(cfg)
    if cfg.data.class_split and not str(cfg.method).startswith("dml-"):
        raise ConfigError(
            "data.class_split=true trains on half of the classes and validates on the others, "
            "which only the metric-learning methods (dml-ce, dml-pairwise) evaluate; drop it "
            f"for --method {cfg.method}"
        )
    if str(cfg.method).startswith("dml-"):
        _validate_dml(cfg)


def _validate_dml(cfg: DictConfig) -> None:
    from infossl.methods.dml import FEATURE_NORMS

    if cfg.loss.feature_norm not in FEATURE_NORMS:
        raise ConfigError(
            f"loss.feature_norm must be one of {FEATURE_NORMS}, not '{cfg.loss.feature_norm}'"
        )
    if cfg.method == "dml-pairwise":
        from infossl.losses.pairwise import NAMES

        if cfg.loss.name not in NAMES:
            hint = (
                " (the paper's pairwise cross-entropy is not implemented: its exact expression "
                "could not be verified, see README 'Metric learning')"
                if str(cfg.loss.name).lower() == "pce"
                else ""
            )
            raise ConfigError(
                f"unknown pairwise loss loss.name={cfg.loss.name}; use one of "
                f"{', '.join(NAMES)}{hint}"
            )


def to_plain(cfg: DictConfig) -> dict:
    """A plain dict (checkpoints hold only plain Python types: weights_only loading)."""
    return OmegaConf.to_container(cfg, resolve=True)
