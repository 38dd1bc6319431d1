"""A KNIFE regularizer switched on from the command line trains with any method on digits."""

import pytest
import torch
from train_helpers import TINY, assert_one_line_error, run_script, tensorboard_scalars, train

pytestmark = pytest.mark.slow

# Written as a user would type it: the bare YAML 1.1 key ``on`` must survive (PyYAML reads it
# as True; infossl.config.normalize_regularizers restores it).
REGULARIZER = "regularizers=[{name: knife_entropy, on: embeddings, weight: 0.05, modes: 16}]"


def _estimator_state(path):
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "regularizers.0."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def test_knife_entropy_regularizer_fits_its_estimator_every_step_and_logs_its_value(tmp_path):
    result = train(
        tmp_path,
        "knife",
        "--method",
        "infonce",
        "--epochs",
        "2",
        "checkpoint.every_n_epochs=1",
        "diagnostics.every_n_epochs=0",
        REGULARIZER,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = (tmp_path / "knife" / "config.yaml").read_text()
    assert "'on': embeddings" in config  # the resolved config reloads with the right key

    checkpoints = tmp_path / "knife" / "checkpoints"
    first = _estimator_state(checkpoints / "epoch=000.ckpt")
    second = _estimator_state(checkpoints / "epoch=001.ckpt")
    means = "estimator.means"
    assert means in first, sorted(first)
    assert first[means].shape == (1, 16, 32)  # modes x projector.output_dim
    for name, value in first.items():
        if torch.is_tensor(value) and value.is_floating_point():
            assert not torch.equal(value, second[name]), f"{name} did not change in epoch 2"

    # One Adam step of the estimator's own optimizer per training step (23 batches of 64 per
    # epoch of 1,437 digits, drop_last), restored and continued across epochs.
    steps_per_epoch = 1437 // 64
    adam = second["_extra_state"]["optimizer"]["state"]
    assert {int(s["step"]) for s in adam.values()} == {2 * steps_per_epoch}

    scalars = tensorboard_scalars(tmp_path / "knife")
    values = [v for _, v in scalars["train/knife_entropy/knife_entropy"]]
    fit_losses = [v for _, v in scalars["train/knife_entropy/knife_fit_loss"]]
    assert len(values) >= 4 and all(torch.isfinite(torch.tensor(values)))
    # The fit loss is -mean log p of the same (standardized) batch just before the estimator's
    # one Adam step (lr 1e-3); the logged estimate is the same quantity just after it.
    torch.testing.assert_close(torch.tensor(fit_losses), torch.tensor(values), rtol=0.05, atol=0.5)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("regularizers=[{name: knife_entrpy}]", "name='knife_entrpy' is not valid"),
        ("regularizers=[{name: knife_mi, on: features}]", "needs num_classes"),
        ("regularizers=[{name: knife_entropy, on: logits}]", "on='logits'"),
    ],
)
def test_bad_regularizer_entry_is_one_line_before_anything_is_written(tmp_path, override, needle):
    result = run_script(
        "train.py", "--method", "infonce", "--data", "digits", "--run-dir", str(tmp_path), override
    )
    assert_one_line_error(result, needle)
    assert not any(tmp_path.iterdir())


def test_knife_mi_on_the_data_nuisance_gets_each_images_own_tint(tmp_path, monkeypatch):
    """train.py with data.nuisance=tint and a knife_mi term reading it (nuisance: data): the s
    reaching the estimator are the dataset's s of the sampled images, in batch order, and the
    logged I(Z; s) is finite."""
    import train as train_script
    from infossl import config as C
    from infossl.data.datamodule import SSLDataModule
    from infossl.data.nuisance import draw_nuisance
    from infossl.data.seeding import EpochSeededSampler
    from infossl.losses.knife_regularizer import KnifeRegularizer

    received = []
    forward = KnifeRegularizer.forward

    def recording(self, x, nuisance=None):
        received.append((self.name, None if nuisance is None else nuisance.clone()))
        return forward(self, x, nuisance)

    monkeypatch.setattr(KnifeRegularizer, "forward", recording)
    regularizers = (
        "regularizers=[{name: knife_mi, nuisance: data, modes: 8, weight: 0.1},"
        " {name: knife_entropy, modes: 8, weight: 0.01}]"
    )
    args = ["--method", "infonce", "--data", "digits", "--run-dir", str(tmp_path)]
    args += ["--name", "tint", *TINY, "--epochs", "1", "data.train_fraction=0.1"]
    args += ["data.nuisance=tint", "trainer.log_every_n_steps=1", "diagnostics.every_n_epochs=0"]
    assert train_script.main([*args, regularizers]) == 0

    run = tmp_path / "tint"
    cfg = C.to_plain(C.stored_config(run / "config.yaml"))
    mi, entropy = cfg["regularizers"]
    assert mi["nuisance"] == "data" and mi["num_classes"] is None  # filled from nuisance_values
    assert entropy["direction"] == "maximize" and "nuisance" not in entropy
    # The order the loader drew (epoch 0) over the 10% subset, and s of those images.
    datamodule = SSLDataModule(cfg)
    datamodule.setup()
    subset = datamodule.train_set.indices
    assert len(subset) == 144
    order = [i for i, _ in EpochSeededSampler(len(subset), cfg["seed"], lambda: 0)]
    s = draw_nuisance(1437, 4, seed=0)[torch.tensor(subset)[torch.tensor(order)]]
    mi_calls = [n for name, n in received if name == "knife_mi"]
    assert [name for name, _ in received] == ["knife_mi", "knife_entropy"] * 2  # 144 // 64
    assert all(n is None for name, n in received if name == "knife_entropy")
    assert torch.equal(torch.cat(mi_calls), s[:128])
    assert len(set(s[:128].tolist())) == 4

    scalars = tensorboard_scalars(run)
    values = [v for _, v in scalars["train/knife_mi/knife_mi"]]
    assert len(values) == 2 and all(torch.isfinite(torch.tensor(values)))
    marginal = [v for _, v in scalars["train/knife_mi/knife_marginal_entropy"]]
    conditional = [v for _, v in scalars["train/knife_mi/knife_conditional_entropy"]]
    torch.testing.assert_close(
        torch.tensor(values), torch.tensor(marginal) - torch.tensor(conditional)
    )
    # an estimator over the 4 tints: one-hot conditions of width data.nuisance_values
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    conditioning = state["regularizers.0.estimator.conditional.mean_net.1.weight"]
    assert conditioning.shape == (32, 4)  # hidden_dim null: the 32-d embeddings' width
