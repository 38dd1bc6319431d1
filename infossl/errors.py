"""The two kinds of failure a command reports in one line (no traceback).

``UserError``: bad input the user can fix (a flag, a config value, a file); exit code 2, and
nothing is written. ``Fault``: a run stopped by something outside the input with a clear cause
(disk full, a NaN loss, an unreadable image); exit code 1, and what was saved stays loadable.
Library modules raise these; only the command-line layer (infossl/cli.py) prints them.
"""

from __future__ import annotations


class UserError(ValueError):
    """Anything the user can fix; raise with a one-line message."""


class ConfigError(UserError):
    """A bad config file, key or value; the message is one line that says how to fix it."""


class Fault(RuntimeError):
    """A run stopped by a fault with a clear cause; the message is one line."""
