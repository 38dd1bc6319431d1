"""Config resolution: the merge order, strict keys, overrides and validation messages."""

import pytest
from omegaconf import OmegaConf

from infossl import config as C
from infossl.methods import METHODS


def test_every_method_config_has_a_registered_method_and_back():
    assert set(C.available("methods")) == set(METHODS)


def test_merge_order_data_then_method_then_pair():
    cfg = C.default_config("infonce", "digits")
    assert cfg.data.image_size == 16  # data/digits.yaml over base.yaml (32)
    assert cfg.loss.temperature == 0.2  # methods/infonce.yaml
    assert cfg.optimizer.name == "sgd"  # methods/infonce/digits.yaml over methods/infonce.yaml
    assert cfg.method == "infonce" and cfg.data.name == "digits"


def test_override_sets_nested_value_with_type():
    cfg = C.apply_overrides(C.default_config("infonce", "digits"), ["optimizer.lr=0.05"])
    assert cfg.optimizer.lr == 0.05


@pytest.mark.parametrize("bad", ["optimizer.lr", "=3", "optimizer lr=3"])
def test_malformed_override_is_a_config_error(bad):
    with pytest.raises(C.ConfigError, match="malformed override"):
        C.apply_overrides(C.default_config("infonce", "digits"), [bad])


def test_unknown_key_is_refused_in_overrides_and_files(tmp_path):
    cfg = C.default_config("infonce", "digits")
    with pytest.raises(C.ConfigError, match="unknown config key 'optimizer.lrr'"):
        C.apply_overrides(cfg, ["optimizer.lrr=0.1"])
    user = tmp_path / "user.yaml"
    user.write_text("trainer:\n  epohcs: 3\n")
    with pytest.raises(C.ConfigError, match="epohcs"):
        C.merge_file(cfg, user)


def test_resolved_config_round_trips_as_config_file(tmp_path):
    cfg = C.resolve_views(C.default_config("infonce", "digits"))
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(cfg))
    again = C.resolve_views(C.merge_file(C.default_config("infonce", "digits"), path))
    assert C.to_plain(again) == C.to_plain(cfg)
    assert len(again.data.views) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=1", "batch size 1 is too small"),
        ("trainer.precision=8", "trainer.precision=8 is not valid: it must be one of auto, 32,"),
        ("trainer.epochs=0", "trainer.epochs=0 is not valid: it must be an integer >= 1"),
        ("trainer.stop_after_epoch=5", "stop_after_epoch=5 is after the last epoch"),
    ],
)
def test_validation_messages(override, message):
    cfg = C.apply_overrides(C.default_config("infonce", "digits"), ["trainer.epochs=3", override])
    cfg = C.resolve_views(cfg)
    with pytest.raises(C.ConfigError, match=message):
        C.validate(cfg)


def test_unknown_method_and_dataset_name_the_choices():
    with pytest.raises(C.ConfigError, match="unknown method 'simclrr'.*infonce"):
        C.default_config("simclrr", "digits")
    with pytest.raises(C.ConfigError, match="unknown dataset 'mnist'.*digits"):
        C.default_config("infonce", "mnist")


def test_stored_config_of_an_older_run_gains_new_keys_with_their_defaults(tmp_path):
    cfg = C.default_config("infonce", "digits")
    cfg.optimizer.lr = 0.123
    old = OmegaConf.to_container(cfg)
    del old["data"]["augment_on"], old["trainer"]["channels_last"]  # keys added later
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    stored = C.stored_config(tmp_path / "config.yaml")
    assert stored.data.augment_on == "auto" and stored.trainer.channels_last == "auto"
    assert stored.optimizer.lr == 0.123 and stored.method == "infonce"


def test_regularizer_yaml_files_hold_exactly_the_schema_keys():
    import dataclasses
    import typing

    from infossl import config_schema as S

    fields = {f.name for f in dataclasses.fields(S.Regularizer)} - {"name"}
    hints = typing.get_type_hints(S.Regularizer, include_extras=True)
    only_mi = {
        name
        for name, tp in hints.items()
        if any(isinstance(c, S.Optional) for c in S._split(tp)[1])
    }
    assert set(C.regularizer_defaults("knife_mi")) == fields
    assert set(C.regularizer_defaults("knife_entropy")) == fields - only_mi
    assert only_mi == {
        "nuisance",
        "num_classes",
        "nuisance_dim",
        "conditional_modes",
        "conditional_full_covariance",
        "hidden_dim",
        "layer_norm",
    }
    assert sorted(C.available("regularizers")) == sorted(S.REGULARIZER_NAMES)


def test_regularizer_entries_are_filled_from_their_yaml_and_keep_what_was_given():
    cfg = C.apply_overrides(
        C.default_config("infonce", "digits"),
        ["regularizers=[{name: knife_mi, on: features, num_classes: 10}, {name: knife_entropy}]"],
    )
    cfg = C.normalize_regularizers(C.resolve_views(cfg))
    mi, entropy = C.to_plain(cfg)["regularizers"]
    assert mi == {
        **C.regularizer_defaults("knife_mi"),
        "name": "knife_mi",
        "on": "features",
        "num_classes": 10,
    }
    assert entropy["direction"] == "maximize" and entropy["standardize"] is True
    assert mi["direction"] == "minimize" and mi["standardize"] is False
    assert mi["lr"] == 1e-3 and mi["betas"] == [0.5, 0.999] and mi["modes"] == 128
    C.validate(cfg)


def test_an_older_corinfomax_run_keeps_its_bias_free_projector_on_resume(tmp_path):
    # projector.last_bias came after the first corinfomax runs: theirs must not gain a bias
    # (base.yaml's default), or their weights would no longer fit the model.
    from infossl.methods import METHODS

    old = OmegaConf.to_container(C.default_config("corinfomax", "digits"))
    del old["projector"]["last_bias"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    stored = C.stored_config(tmp_path / "config.yaml")
    assert stored.projector.last_bias is False
    cfg = C.to_plain(C.resolve_views(stored))
    last = [m for m in METHODS["corinfomax"](cfg, 10).projector.modules() if hasattr(m, "bias")]
    assert last[-1].bias is None and last[0].bias is not None  # only the final Linear lacks it
    infonce = C.to_plain(C.resolve_views(C.default_config("infonce", "digits")))
    assert infonce["projector"]["last_bias"] is True
    final = [m for m in METHODS["infonce"](infonce, 10).projector.modules() if hasattr(m, "bias")]
    assert final[-1].bias is not None
