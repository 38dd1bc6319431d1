"""``--resume auto``: the newest checkpoint of a run that actually loads.

Candidates are ``<run>/checkpoints/*.ckpt`` (``last.ckpt`` and the periodic ``epoch=NNN.ckpt``),
ordered newest first by the ``global_step`` and ``epoch`` stored *inside* them (file times lie
after a copy or an rsync), ``last.ckpt`` first among equals. Ordering reads each file with
``mmap=True`` (tensors are mapped, not read), so a run with many large checkpoints costs one
metadata pass that already rejects truncated, foreign, unsafe and structurally corrupted
files; then candidates are fully read newest first until one succeeds. Every file that fails
is named in a warning together with the one used instead. Not detectable: flipped bits inside
tensor data (``torch.load`` does not verify the archive's CRC-32; measured).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from infossl.reliability.checkpoint_io import CheckpointError, load_checkpoint_safely


@dataclass
class ResumeChoice:
    path: Path | None  # None: the run has no checkpoint yet
    global_step: int = -1
    messages: list[str] = field(default_factory=list)  # one per unreadable file, already warned


def _progress(checkpoint: dict) -> tuple[int, int]:
    return int(checkpoint.get("global_step", -1)), int(checkpoint.get("epoch", -1))


def choose_resume_checkpoint(run_dir: str | Path) -> ResumeChoice:
    """The newest loadable checkpoint and the warnings about newer or broken ones. Raises
    ``CheckpointError`` (one line) when checkpoints exist but none loads."""
    directory = Path(run_dir) / "checkpoints"
    files = sorted(directory.glob("*.ckpt")) if directory.is_dir() else []
    if not files:
        return ResumeChoice(None)
    ordered: list[tuple[tuple[int, int, bool], Path]] = []
    broken: list[tuple[Path, str]] = []
    for path in files:
        try:
            step_epoch = _progress(load_checkpoint_safely(path, mmap=True))
            ordered.append(((*step_epoch, path.name == "last.ckpt"), path))
        except CheckpointError as err:
            broken.append((path, str(err)))
    ordered.sort(reverse=True)
    chosen: tuple[int, Path] | None = None
    for (step, _, _), path in ordered:
        try:
            load_checkpoint_safely(path)  # every tensor read: catches damage mmap did not touch
            chosen = (step, path)
            break
        except CheckpointError as err:
            broken.append((path, str(err)))
    if chosen is None:
        raise CheckpointError(
            f"no loadable checkpoint in {directory}: "
            + "; ".join(f"{p.name}: {e}" for p, e in broken)
        )
    step, path = chosen
    messages = [
        f"checkpoint {bad} is unreadable ({error}); resuming from {path} (step {step}) instead"
        for bad, error in broken
    ]
    return ResumeChoice(path, step, messages)


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """``choose_resume_checkpoint`` for ``--resume auto``, its messages sent to ``warnings``."""
    choice = choose_resume_checkpoint(run_dir)
    for message in choice.messages:
        warnings.warn(message, stacklevel=2)
    return choice.path
