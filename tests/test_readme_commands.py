"""The README's test command prints pytest's summary line ("N passed"): its flags and
pyproject's ``addopts`` together quieten pytest at most once (``-qq`` drops the summary)."""

from __future__ import annotations

import re
import shlex

from train_helpers import ROOT


def readme_test_command() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    marker = lines.index("<!-- test-command -->")
    return next(line.strip() for line in lines[marker + 1 :] if line.strip())


def pyproject_addopts() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.pytest.ini_options]", 1)[1].split("\n[", 1)[0]
    found = re.search(r'^addopts\s*=\s*"([^"]*)"', section, re.M)
    return shlex.split(found.group(1)) if found else []


def quiet_level(args: list[str]) -> int:
    """``-q`` counts one, ``-qq`` two, ``--quiet`` one; ``-v`` / ``--verbose`` minus one."""
    level = 0
    for arg in args:
        if re.fullmatch(r"-[qv]+", arg):
            level += arg.count("q") - arg.count("v")
        elif arg in ("--quiet", "--verbose"):
            level += 1 if arg == "--quiet" else -1
    return level


def test_readme_test_command_keeps_the_summary_line():
    command = readme_test_command()
    assert command == "python -m pytest -q -n 2 --dist loadfile"
    addopts = pyproject_addopts()
    assert addopts == ["-ra"]  # a summary of skips and failures, no extra -q
    assert quiet_level(shlex.split(command)[3:] + addopts) == 1


def test_quiet_level_counts_every_spelling():
    assert quiet_level(["-q", "-ra"]) == 1
    assert quiet_level(["-q", "-q"]) == quiet_level(["-qq"]) == quiet_level(["-q", "--quiet"]) == 2
    assert quiet_level(["-qq", "-v"]) == 1
