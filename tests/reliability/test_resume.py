"""--resume auto picks the newest loadable training checkpoint by the step stored inside it,
falls back past a damaged or foreign newest one with a message naming both files, and fails in
one line when nothing qualifies."""

import os
import re

import pytest
import torch

from infossl.reliability.checkpoint_io import CheckpointError, atomic_torch_save
from infossl.reliability.resume import choose_resume_checkpoint


def _run(tmp_path, steps_by_name: dict[str, tuple[int, int]]):
    directory = tmp_path / "run" / "checkpoints"
    for name, (step, epoch) in steps_by_name.items():
        atomic_torch_save(_training_checkpoint(step, epoch), directory / name)
    return tmp_path / "run"


def _training_checkpoint(step: int, epoch: int) -> dict:
    """What Lightning writes, reduced to what the resume check looks at."""
    return {
        "global_step": step,
        "epoch": epoch,
        "state_dict": {"w": torch.full((64,), step)},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}],
        "loops": {"fit_loop": {}},
    }


def test_newest_by_stored_step_not_file_time(tmp_path):
    run = _run(
        tmp_path, {"epoch=000.ckpt": (10, 0), "epoch=001.ckpt": (20, 1), "last.ckpt": (25, 2)}
    )
    old = run / "checkpoints" / "epoch=000.ckpt"
    os.utime(old, (4e9, 4e9))  # the oldest checkpoint has the newest mtime (a copy, an rsync)
    choice = choose_resume_checkpoint(run)
    assert choice.path == run / "checkpoints" / "last.ckpt" and choice.messages == []


def test_last_ckpt_wins_a_tie_with_the_periodic_checkpoint_of_the_same_step(tmp_path):
    run = _run(tmp_path, {"epoch=001.ckpt": (20, 1), "last.ckpt": (20, 1)})
    assert choose_resume_checkpoint(run).path.name == "last.ckpt"


def test_truncated_newest_falls_back_to_the_previous_one_with_a_warning_naming_both(tmp_path):
    run = _run(
        tmp_path, {"epoch=000.ckpt": (10, 0), "epoch=001.ckpt": (20, 1), "last.ckpt": (25, 2)}
    )
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:300])  # as a non-atomic writer killed mid-write leaves
    choice = choose_resume_checkpoint(run)
    chosen = choice.path
    assert chosen == run / "checkpoints" / "epoch=001.ckpt"
    [message] = choice.messages
    assert re.fullmatch(
        rf"checkpoint {re.escape(str(last))} is unreadable \(.*not a checkpoint.*\); resuming "
        rf"from {re.escape(str(chosen))} \(step 20\) instead",
        message,
    )


def test_an_internally_corrupted_archive_falls_back(tmp_path):
    run = _run(tmp_path, {"epoch=000.ckpt": (10, 0), "last.ckpt": (25, 2)})
    last = run / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    # Whole length, valid end-of-archive record, but a record header inside is garbage.
    record = data.find(b"data/0")
    size_field = data.find(b"\x00\x01\x00\x00", record)  # 256 bytes = 64 float32
    data[size_field : size_field + 4] = (10**6).to_bytes(4, "little")
    last.write_bytes(bytes(data))
    choice = choose_resume_checkpoint(run)
    assert choice.path.name == "epoch=000.ckpt" and choice.global_step == 10
    assert len(choice.messages) == 1 and "last.ckpt is" in choice.messages[0]


def test_nothing_loadable_is_one_line_naming_every_file(tmp_path):
    run = _run(tmp_path, {"epoch=000.ckpt": (10, 0), "last.ckpt": (25, 2)})
    for path in (run / "checkpoints").iterdir():
        path.write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError) as err:
        choose_resume_checkpoint(run)
    message = str(err.value)
    assert "\n" not in message and message.startswith("no usable checkpoint in")
    assert "epoch=000.ckpt is unreadable (" in message and "last.ckpt is unreadable (" in message


def test_a_run_without_checkpoints_resumes_from_nothing(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert choose_resume_checkpoint(tmp_path / "run").path is None
    assert choose_resume_checkpoint(tmp_path / "never-started").path is None


def test_a_loadable_file_that_is_not_a_training_checkpoint_is_passed_over(tmp_path):
    run = _run(tmp_path, {"epoch=000.ckpt": (10, 0), "last.ckpt": (25, 2)})
    fake = run / "checkpoints" / "epoch=999.ckpt"
    torch.save({"global_step": 10**9, "epoch": 999}, fake)  # loads, and its step is newest
    choice = choose_resume_checkpoint(run, expected_keys={"w"})
    assert choice.path == run / "checkpoints" / "last.ckpt" and choice.global_step == 25
    assert choice.messages == [
        f"checkpoint {fake} is not a training checkpoint of this run (it has no state_dict); "
        f"resuming from {choice.path} (step 25) instead"
    ]


def test_a_checkpoint_of_another_model_or_without_optimizer_state_is_passed_over(tmp_path):
    run = _run(tmp_path, {"epoch=000.ckpt": (10, 0)})
    other = _training_checkpoint(30, 3)
    other["state_dict"] = {"w": torch.zeros(64), "extra.bias": torch.zeros(2)}
    atomic_torch_save(other, run / "checkpoints" / "epoch=003.ckpt")
    bare = _training_checkpoint(40, 4)
    del bare["optimizer_states"]
    atomic_torch_save(bare, run / "checkpoints" / "last.ckpt")
    choice = choose_resume_checkpoint(run, expected_keys={"w"})
    assert choice.path.name == "epoch=000.ckpt"
    reasons = sorted(m.split(" (", 1)[1].split(");")[0] for m in choice.messages)
    assert reasons == [
        "it has no optimizer state",
        "its state_dict does not fit this run's model (0 missing, 1 unexpected keys)",
    ]
