"""Under DDP the preemption decision costs one all-reduce every ``every_n_steps`` batches, not a
collective per step, and Lightning's per-step SIGTERM broadcast is off while the callback owns
SIGTERM (restored after fit). A fake two-process trainer counts the collectives."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException

from infossl.lightning_compat import SIGTERM_BROADCAST, lightning_sigterm_broadcast
from infossl.reliability.preemption import PreemptionCheckpoint


class _Strategy:
    def __init__(self, peer_requests_at: int | None = None):
        self.calls: list[int] = []
        self.peer_requests_at = peer_requests_at

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls.append(self.step)
        peer = self.peer_requests_at is not None and self.step >= self.peer_requests_at
        return decision or peer


def _trainer(strategy, world_size=2):
    loop = SimpleNamespace(**{SIGTERM_BROADCAST: lightning_sigterm_broadcast})
    saved = []
    trainer = SimpleNamespace(
        world_size=world_size,
        strategy=strategy,
        fit_loop=SimpleNamespace(epoch_loop=loop),
        global_step=0,
        should_stop=False,
        save_checkpoint=lambda path, weights_only: saved.append(trainer.global_step),
        _accelerator_connector=SimpleNamespace(cluster_environment=None),
    )
    return trainer, loop, saved


def _steps(callback, trainer, strategy, n, signal_at=None):
    for batch_idx in range(n):
        trainer.global_step = strategy.step = batch_idx + 1
        if batch_idx == signal_at:
            callback._on_signal(signal.SIGTERM, None)
        callback.on_train_batch_end(trainer, None, None, None, batch_idx)


def test_ddp_decides_every_n_steps_and_lightning_broadcast_is_off_during_fit(tmp_path):
    strategy = _Strategy()
    trainer, loop, saved = _trainer(strategy)
    callback = PreemptionCheckpoint(tmp_path / "last.ckpt", every_n_steps=10)
    callback.on_train_start(trainer, None)
    try:
        assert loop._broadcast_sigterm_tensor() is None  # the no-op, no collective
        _steps(callback, trainer, strategy, 30)
        assert strategy.calls == [10, 20, 30]  # one all-reduce per 10 steps, none between
        with pytest.raises(SIGTERMException):
            _steps(callback, trainer, strategy, 50, signal_at=33)
    finally:
        callback.on_train_end(trainer, None)
    assert saved == [40] and callback.saved_step == 40  # the next decision step after 33
    assert "_broadcast_sigterm_tensor" not in vars(loop)  # Lightning's own method again
    assert signal.getsignal(signal.SIGTERM) is not callback._on_signal


def test_a_signal_on_a_peer_stops_this_process_at_the_same_step(tmp_path):
    strategy = _Strategy(peer_requests_at=12)
    trainer, _, saved = _trainer(strategy)
    callback = PreemptionCheckpoint(tmp_path / "last.ckpt", every_n_steps=5)
    callback.on_train_start(trainer, None)
    try:
        with pytest.raises(SIGTERMException):
            _steps(callback, trainer, strategy, 30)
    finally:
        callback.on_train_end(trainer, None)
    assert saved == [15] and callback.requested_by == "a signal on another process"


def test_one_process_acts_on_the_next_step_without_collectives(tmp_path):
    strategy = _Strategy()
    trainer, loop, saved = _trainer(strategy, world_size=1)
    callback = PreemptionCheckpoint(tmp_path / "last.ckpt", every_n_steps=10)
    callback.on_train_start(trainer, None)
    try:
        with pytest.raises(SIGTERMException):
            _steps(callback, trainer, strategy, 30, signal_at=3)
    finally:
        callback.on_train_end(trainer, None)
    assert saved == [4] and strategy.calls == []
    assert "_broadcast_sigterm_tensor" in vars(loop)  # untouched on one process
