"""What every command-line entry point shares: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from infossl.backbones import BackboneError
from infossl.errors import ConfigError, Fault, UserError
from infossl.rundir import RunDirError
from infossl.runtime import DeviceError

__all__ = ["ConfigError", "UserError"]  # defined in infossl.errors; imported from here before

USAGE_EXIT = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    from infossl.data.datasets import DataError
    from infossl.reliability.checkpoint_io import CheckpointError

    return (
        UserError,
        ConfigError,
        BackboneError,
        RunDirError,
        DeviceError,
        DataError,
        CheckpointError,
    )


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports an unknown or malformed flag as one line, exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _runtime_error_types() -> tuple[type[BaseException], ...]:
    from infossl.reliability.nonfinite import NonFiniteLossError
    from infossl.reliability.safe_images import BadImageError

    return (Fault, NonFiniteLossError, BadImageError)


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
    except user_error_types() as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return USAGE_EXIT
    except _runtime_error_types() as err:
        # Not bad input but a training fault with a clear cause: one line, exit 1.
        print(f"{prog}: stopped: {_one_line(err)}", file=sys.stderr)
        return 1
