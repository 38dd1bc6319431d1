"""--resume auto picks the newest loadable checkpoint by the step stored inside it, falls back
past a damaged newest one with a warning naming both files, and fails in one line when nothing
loads."""

import os
import re
import warnings

import pytest
import torch

from infossl.reliability.checkpoint_io import CheckpointError, atomic_torch_save
from infossl.reliability.resume import choose_resume_checkpoint, find_resume_checkpoint


def _run(tmp_path, steps_by_name: dict[str, tuple[int, int]]):
    directory = tmp_path / "run" / "checkpoints"
    for name, (step, epoch) in steps_by_name.items():
        atomic_torch_save(
            {"global_step": step, "epoch": epoch, "state_dict": {"w": torch.full((64,), step)}},
            directory / name,
        )
    return tmp_path / "run"


def test_newest_by_stored_step_not_file_time(tmp_path):
    run = _run(
        tmp_path, {"epoch=000.ckpt": (10, 0), "epoch=001.ckpt": (20, 1), "last.ckpt": (25, 2)}
    )
    old = run / "checkpoints" / "epoch=000.ckpt"
    os.utime(old, (4e9, 4e9))  # the oldest checkpoint has the newest mtime (a copy, an rsync)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_resume_checkpoint(run) == run / "checkpoints" / "last.ckpt"


def test_last_ckpt_wins_a_tie_with_the_periodic_checkpoint_of_the_same_step(tmp_path):
    run = _run(tmp_path, {"epoch=001.ckpt": (20, 1), "last.ckpt": (20, 1)})
    assert choose_resume_checkpoint(run).path.name == "last.ckpt"


def test_truncated_newest_falls_back_to_the_previous_one_with_a_warning_naming_both(tmp_path):
    run = _run(
        tmp_path, {"epoch=000.ckpt": (10, 0), "epoch=001.ckpt": (20, 1), "last.ckpt": (25, 2)}
    )
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:300])  # as a non-atomic writer killed mid-write leaves
    with pytest.warns(UserWarning) as caught:
        chosen = find_resume_checkpoint(run)
    assert chosen == run / "checkpoints" / "epoch=001.ckpt"
    [message] = [str(w.message) for w in caught]
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
    assert "\n" not in message and message.startswith("no loadable checkpoint in")
    assert "epoch=000.ckpt: " in message and "last.ckpt: " in message


def test_a_run_without_checkpoints_resumes_from_nothing(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert find_resume_checkpoint(tmp_path / "run") is None
    assert find_resume_checkpoint(tmp_path / "never-started") is None
