"""The public API: every name in ``infossl.__all__`` and in each subpackage's ``__all__`` imports,
and is documented in one style (a summary line; ``Args:`` when it takes arguments, ``Attributes:``
for a record type; ``Returns:`` for a function that returns something); constants are described
in their package's docstring. Docstrings cite papers and official repositories, never local
files."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest
from train_helpers import ROOT

PACKAGES = (
    "infossl",
    "infossl.losses",
    "infossl.mi",
    "infossl.eval",
    "infossl.data",
    "infossl.methods",
    "infossl.reliability",
)
# Internal names that must stay out of the public API (dead code being removed).
NOT_PUBLIC = {"FLOLoss", "BilinearCritic", "ldmi_loss"}


def public_names() -> list[tuple[str, str]]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        assert isinstance(module.__all__, list | tuple) and module.__all__, package
        assert len(set(module.__all__)) == len(module.__all__), package
        names += [(package, name) for name in module.__all__]
    return names


def _is_record(obj) -> bool:
    return inspect.isclass(obj) and (
        hasattr(obj, "__dataclass_fields__") or (issubclass(obj, tuple) and hasattr(obj, "_fields"))
    )


def _parameters(obj) -> list[str]:
    if inspect.isclass(obj):
        if issubclass(obj, BaseException) or "__init__" not in vars(obj) and not _is_record(obj):
            return []
        target = obj
    else:
        target = obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters if p not in ("self", "cls")]


def test_the_api_lists_the_user_facing_names_and_not_the_dead_code():
    names = {name for _, name in public_names()}
    assert {"CorInfoMaxLoss", "FLOSSLLoss", "ReMINESSLLoss", "MIBoundLoss", "estimate"} <= names
    assert {"METHODS", "SSLDataModule", "knn_top1", "load_checkpoint_safely"} <= names
    assert not names & NOT_PUBLIC


def test_importing_the_packages_is_cheap_until_a_name_is_used():
    code = (
        "import sys, infossl, infossl.losses, infossl.mi, infossl.eval, infossl.data, "
        "infossl.reliability; print('torch' in sys.modules); infossl.losses.CorInfoMaxLoss; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.parametrize(("package", "name"), public_names())
def test_every_public_name_imports_and_is_documented(package, name):
    module = importlib.import_module(package)
    obj = getattr(module, name)
    exec(f"from {package} import {name}", {})  # what a user writes
    if inspect.ismodule(obj):
        assert obj.__name__ == f"{package}.{name}" and (obj.__doc__ or "").strip()
        return
    if not (inspect.isclass(obj) or callable(obj)):  # a constant: its package says what it is
        assert f"``{name}``" in module.__doc__, f"{package}.__doc__ does not describe {name}"
        return
    doc = inspect.cleandoc(obj.__doc__ or "")  # a class's own, not one inherited
    auto = f"{obj.__name__}("  # what dataclass / NamedTuple write when no docstring is given
    assert doc.strip() and not doc.startswith(auto), f"{package}.{name} has no docstring"
    summary = doc.split("\n\n", 1)[0]
    assert summary.strip(), f"{package}.{name}: no summary line"
    if _parameters(obj):
        section = "Attributes:" if _is_record(obj) else "Args:"
        assert f"\n{section}\n" in f"\n{doc}", f"{package}.{name}: no {section} section"
    if inspect.isfunction(obj):
        returns = inspect.signature(obj).return_annotation
        if returns not in (None, "None"):
            assert "\nReturns:\n" in doc, f"{package}.{name}: no Returns: section"
    for local in ("methods.md", "/work/", "shared/reference"):
        assert local not in doc, f"{package}.{name} cites a local file ({local})"


def test_the_bounds_named_by_module_path_are_documented_in_the_same_style():
    # infonce and flo are also module names, so these are public as infossl.losses.mi_bounds.*
    # and infossl.losses.flo.flo (README "Use the losses in your own code").
    from infossl.losses import flo, mi_bounds

    for fn in [*mi_bounds.ESTIMATORS.values(), flo.flo]:
        doc = inspect.getdoc(fn)
        assert "\nArgs:\n" in doc and "\nReturns:\n" in doc, fn.__name__
