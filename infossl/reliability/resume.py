"""``--resume auto``: the newest checkpoint of a run that actually loads."""

from __future__ import annotations

import warnings
from pathlib import Path

from infossl.reliability.checkpoint_io import CheckpointError, load_checkpoint_safely


def _progress(checkpoint: dict) -> tuple[int, int]:
    return int(checkpoint.get("global_step", -1)), int(checkpoint.get("epoch", -1))


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """Newest loadable checkpoint in ``<run_dir>/checkpoints`` by stored global step (then
    epoch), not by file time. An unreadable newer file is skipped with a warning naming it and
    the one used instead. None when the run has no checkpoint yet."""
    directory = Path(run_dir) / "checkpoints"
    files = sorted(directory.glob("*.ckpt")) if directory.is_dir() else []
    if not files:
        return None
    readable: list[tuple[tuple[int, int], Path]] = []
    broken: list[tuple[Path, str]] = []
    for path in files:
        try:
            readable.append((_progress(load_checkpoint_safely(path)), path))
        except CheckpointError as err:
            broken.append((path, str(err)))
    if not readable:
        raise CheckpointError(
            f"no loadable checkpoint in {directory}: "
            + "; ".join(f"{p.name}: {e}" for p, e in broken)
        )
    # last.ckpt first among equals: it carries the same state as the numbered one.
    readable.sort(key=lambda item: (item[0], item[1].name == "last.ckpt"))
    progress, chosen = readable[-1]
    for path, error in broken:
        mtime_newer = path.stat().st_mtime >= chosen.stat().st_mtime
        if mtime_newer or path.name == "last.ckpt":
            warnings.warn(
                f"checkpoint {path} is unreadable ({error}); resuming from {chosen} "
                f"(step {progress[0]}) instead",
                stacklevel=2,
            )
    return chosen
