"""``--resume auto``: the newest checkpoint of a run that actually loads.

Candidates are ``<run>/checkpoints/*.ckpt`` (``last.ckpt`` and the periodic ``epoch=NNN.ckpt``),
ordered newest first by the ``global_step`` and ``epoch`` stored *inside* them (file times lie
after a copy or an rsync), ``last.ckpt`` first among equals. Ordering reads each file with
``mmap=True`` (tensors are mapped, not read), so a run with many large checkpoints costs one
metadata pass that already rejects truncated, foreign, unsafe and structurally corrupted
files; then candidates are fully read newest first until one succeeds. A file that loads but
is not a training checkpoint of this run (no optimizer or loop state, or state_dict keys that
are not the model's, e.g. ``{"global_step": 10**9, "epoch": 999}`` saved as ``epoch=999.ckpt``)
is passed over like an unreadable one, before its stored step can win the ordering. Every file
that fails is named in a warning together with the one used instead. Not detectable: flipped
bits inside tensor data (``torch.load`` does not verify the archive's CRC-32; measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infossl.reliability.checkpoint_io import CheckpointError, load_checkpoint_safely


@dataclass
class ResumeChoice:
    path: Path | None  # None: the run has no checkpoint yet
    global_step: int = -1
    messages: list[str] = field(default_factory=list)  # one per file passed over


def _progress(checkpoint: dict) -> tuple[int, int]:
    return int(checkpoint["global_step"]), int(checkpoint["epoch"])


def not_a_training_checkpoint(checkpoint: dict, expected_keys: set[str] | None) -> str | None:
    """Why ``checkpoint`` cannot continue training this run's model, or None if it can. Looks
    at structure and key names only (works on an ``mmap=True`` load without reading tensors)."""
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not state:
        return "it has no state_dict"
    if expected_keys is not None and set(state) != expected_keys:
        missing, unexpected = len(expected_keys - set(state)), len(set(state) - expected_keys)
        return (
            f"its state_dict does not fit this run's model ({missing} missing, "
            f"{unexpected} unexpected keys)"
        )
    optimizers = checkpoint.get("optimizer_states")
    if not (
        isinstance(optimizers, list)
        and optimizers
        and all(isinstance(o, dict) and {"state", "param_groups"} <= set(o) for o in optimizers)
    ):
        return "it has no optimizer state"
    if not isinstance(checkpoint.get("loops"), dict):
        return "it has no training-loop state"
    if not all(isinstance(checkpoint.get(k), int) for k in ("global_step", "epoch")):
        return "it has no integer global_step and epoch"
    return None


def choose_resume_checkpoint(
    run_dir: str | Path, expected_keys: set[str] | None = None
) -> ResumeChoice:
    """The checkpoint ``--resume auto`` continues: the newest loadable training checkpoint.

    Args:
        run_dir: the run directory (its ``checkpoints/*.ckpt`` are read).
        expected_keys: the model's state_dict keys; a checkpoint with other keys is passed over.

    Returns:
        ``ResumeChoice`` of ``path`` (None when the run has no checkpoint), ``global_step`` and
        one warning message per file passed over.

    Raises:
        CheckpointError: one line, when checkpoints exist but none qualifies.
    """
    directory = Path(run_dir) / "checkpoints"
    files = sorted(directory.glob("*.ckpt")) if directory.is_dir() else []
    if not files:
        return ResumeChoice(None)
    ordered: list[tuple[tuple[int, int, bool], Path]] = []
    broken: list[tuple[Path, str]] = []
    for path in files:
        try:
            checkpoint = load_checkpoint_safely(path, mmap=True)
        except CheckpointError as err:
            broken.append((path, f"is unreadable ({err})"))
            continue
        problem = not_a_training_checkpoint(checkpoint, expected_keys)
        if problem:
            broken.append((path, f"is not a training checkpoint of this run ({problem})"))
        else:
            ordered.append(((*_progress(checkpoint), path.name == "last.ckpt"), path))
    ordered.sort(reverse=True)
    chosen: tuple[int, Path] | None = None
    for (step, _, _), path in ordered:
        try:
            load_checkpoint_safely(path)  # every tensor read: catches damage mmap did not touch
            chosen = (step, path)
            break
        except CheckpointError as err:
            broken.append((path, f"is unreadable ({err})"))
    if chosen is None:
        raise CheckpointError(
            f"no usable checkpoint in {directory}: "
            + "; ".join(f"{p.name} {why}" for p, why in broken)
        )
    step, path = chosen
    messages = [
        f"checkpoint {bad} {why}; resuming from {path} (step {step}) instead" for bad, why in broken
    ]
    return ResumeChoice(path, step, messages)
