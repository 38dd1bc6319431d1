"""A KNIFE regularizer switched on from the command line trains with any method on digits."""

import pytest
import torch
from train_helpers import assert_one_line_error, run_script, tensorboard_scalars, train

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
