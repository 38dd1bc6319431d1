"""NonFiniteGuard: skips up to its limit with a warning per skip, then stops with a message that
names the step, every loss term's value and the last good checkpoint; in a real Trainer a
skipped batch leaves the weights and the optimizer untouched."""

import math

import pytest
import torch
from reliability_tiny import TinyModule, make_trainer

from infossl.reliability.nonfinite import NonFiniteGuard, NonFiniteLossError, describe_terms

NAN = torch.tensor(float("nan"))


def test_finite_losses_pass_and_count_nothing():
    guard = NonFiniteGuard(skip_limit=0)
    assert guard.check(torch.tensor(1.5), {"a": torch.tensor(1.0)}, step=3) is False
    assert guard.skipped == 0


def test_skips_up_to_the_limit_then_stops_naming_step_terms_and_checkpoint():
    guard = NonFiniteGuard(skip_limit=2, last_checkpoint=lambda: "/runs/x/checkpoints/last.ckpt")
    terms = {
        "train/loss": NAN,
        "train/alignment": torch.tensor(0.25),
        "train/uniformity": torch.tensor(float("-inf")),
    }
    with pytest.warns(UserWarning, match=r"non-finite loss at step 7 .*\(1 of at most 2\)"):
        assert guard.check(NAN, terms, step=7) is True
    with pytest.warns(UserWarning, match=r"step 9 .*\(2 of at most 2\)"):
        assert guard.check(torch.tensor(float("inf")), terms, step=9) is True
    assert guard.skipped == 2
    with pytest.raises(NonFiniteLossError) as err:
        guard.check(NAN, terms, step=11)
    assert str(err.value) == (
        "non-finite loss at step 11 (train/loss=nan, train/alignment=0.25, "
        "train/uniformity=-inf); stopped after 2 skipped batch(es) "
        "(training.skip_nonfinite=2); last good checkpoint: /runs/x/checkpoints/last.ckpt"
    )


def test_limit_zero_stops_at_once_and_says_when_no_checkpoint_exists_yet():
    guard = NonFiniteGuard(skip_limit=0)
    with pytest.raises(
        NonFiniteLossError,
        match=r"step 0 \(loss=nan, kl=3\.5\).*checkpoint: "
        r"none yet$",
    ):
        guard.check(NAN, {"kl": torch.tensor(3.5)}, step=0)


def test_describe_terms_shows_tensor_terms_by_non_finite_count():
    text = describe_terms({"z": torch.tensor([1.0, math.nan, math.inf]), "lr": 0.1, "tag": "x"})
    assert text == "z=<(3,) tensor, 2 non-finite>, lr=0.1, tag='x'"


class _NanAtSteps(TinyModule):
    def __init__(self, nan_steps, skip_limit):
        super().__init__(n=16, batch_size=4)
        self.guard = NonFiniteGuard(skip_limit, inject_at_steps=nan_steps)
        self.weights_seen = []

    def training_step(self, batch, batch_idx):
        self.weights_seen.append(self.layer.weight.detach().clone())
        loss = self.guard.maybe_inject(super().training_step(batch, batch_idx), batch_idx)
        if self.guard.check(loss, {}, batch_idx):
            return None
        return loss


def test_in_a_trainer_a_skipped_batch_changes_no_weight_and_no_optimizer_step(tmp_path):
    torch.manual_seed(0)
    module = _NanAtSteps(nan_steps=(1,), skip_limit=1)
    trainer = make_trainer(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match="non-finite loss at step 1"):
        trainer.fit(module)
    seen = module.weights_seen
    assert len(seen) == 4 and module.guard.skipped == 1
    assert torch.equal(seen[1], seen[2])  # batch 1 skipped: nothing changed
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[2], seen[3])
    # Lightning still calls optimizer.step (its closure returned None, so no gradient exists
    # and torch optimizers leave every parameter alone), so the step counter still advances.
    assert trainer.global_step == 4


def test_in_a_trainer_past_the_limit_the_error_reaches_the_caller(tmp_path):
    module = _NanAtSteps(nan_steps=(2,), skip_limit=0)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        make_trainer(tmp_path, max_epochs=1).fit(module)


def test_stop_mode_records_on_device_without_a_sync_and_names_the_first_bad_step():
    from sync_probe import HostSyncProbe

    guard = NonFiniteGuard(skip_limit=0, last_checkpoint=lambda: "/runs/x/checkpoints/last.ckpt")
    assert not guard.syncs_every_step
    with HostSyncProbe() as probe:
        guard.record(torch.tensor(1.0), {"train/loss": torch.tensor(1.0)}, step=4)
        guard.record(NAN, {"train/loss": NAN, "train/kl": torch.tensor(3.5)}, step=5)
        guard.record(torch.tensor(2.0), {"train/loss": torch.tensor(2.0)}, step=6)
        guard.record(NAN, {"train/loss": NAN, "train/kl": torch.tensor(9.0)}, step=7)
    assert probe.syncs == []
    with pytest.raises(NonFiniteLossError) as err:
        guard.raise_if_recorded()
    assert str(err.value) == (
        "non-finite loss at step 5 (train/loss=nan, train/kl=3.5); stopped "
        "(training.skip_nonfinite=0); last good checkpoint: /runs/x/checkpoints/last.ckpt"
    )
    finite = NonFiniteGuard(skip_limit=0)
    finite.raise_if_recorded()  # nothing recorded yet
    finite.record(torch.tensor(1.0), {}, step=0)
    finite.raise_if_recorded()  # only finite losses
    assert NonFiniteGuard(skip_limit=1).syncs_every_step  # skipping decides before backward
