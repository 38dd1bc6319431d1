"""What every command-line entry point shares: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from infossl.backbones import BackboneError
from infossl.config import ConfigError
from infossl.rundir import RunDirError
from infossl.runtime import DeviceError

USAGE_EXIT = 2


class UserError(ValueError):
    """Anything else the user can fix; raise with a one-line message."""


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


def run_cli(main: Callable[[], int]) -> int:
    try:
        return main()
    except user_error_types() as err:
        message = " ".join(str(err).split())
        print(f"{sys.argv[0].split('/')[-1]}: error: {message}", file=sys.stderr)
        return USAGE_EXIT
