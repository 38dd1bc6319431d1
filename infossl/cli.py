"""What every command-line entry point shares: bad input is one line on stderr and exit 2.

This module imports nothing heavy (no torch, Lightning, timm): ``--help`` and argument errors
answer at once, and the error types of the heavy modules are matched only when those modules
are already loaded (an exception of a class whose module was never imported cannot occur).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from infossl.errors import ConfigError, UserError

__all__ = ["ConfigError", "UserError"]  # defined in infossl.errors; imported from here before

USAGE_EXIT = 2

# (module, class) of every error the user can fix by changing the command or the config.
USER_ERRORS = (
    ("infossl.errors", "UserError"),  # ConfigError is a UserError
    ("infossl.backbones", "BackboneError"),
    ("infossl.rundir", "RunDirError"),
    ("infossl.runtime", "DeviceError"),
    ("infossl.data.datasets", "DataError"),
    ("infossl.reliability.checkpoint_io", "CheckpointError"),
)
# Not bad input but a training fault with a clear cause: one line, exit 1.
RUNTIME_ERRORS = (
    ("infossl.errors", "Fault"),
    ("infossl.reliability.nonfinite", "NonFiniteLossError"),
    ("infossl.reliability.safe_images", "BadImageError"),
)


def loaded_types(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    """The classes named in ``names`` whose modules are already imported."""
    modules = ((sys.modules.get(module), cls) for module, cls in names)
    return tuple(getattr(m, cls) for m, cls in modules if m is not None and hasattr(m, cls))


def user_error_types() -> tuple[type[BaseException], ...]:
    return loaded_types(USER_ERRORS)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports an unknown or malformed flag as one line, exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(err: BaseException) -> str:
    # DataLoader re-raises a worker's exception with the worker traceback in its message; the
    # original message is its last line, after "ExceptionName: ".
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    return last.split("Error: ", 1)[-1] if len(lines) > 1 else " ".join(last.split())


def run_cli(main: Callable[[], int]) -> int:
    prog = sys.argv[0].split("/")[-1]
    try:
        return main()
    except Exception as err:
        if isinstance(err, user_error_types()):
            print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
            return USAGE_EXIT
        if isinstance(err, loaded_types(RUNTIME_ERRORS)):
            print(f"{prog}: stopped: {_one_line(err)}", file=sys.stderr)
            return 1
        raise
