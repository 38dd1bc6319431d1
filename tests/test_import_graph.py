"""The package's import graph, read from the source with ``ast`` (nothing is imported): no cycle
between infossl modules, no module that no entry point reaches, and a docstring on every file
whose first line says what the file is for.

Edges are the import statements of a module wherever they stand (module level or inside a
function; ``if TYPE_CHECKING:`` blocks never run and are left out). ``from infossl.eval import
knn_top1`` is an edge to ``infossl.eval`` and, through its lazy map, to ``infossl.eval.knn``,
the module that access loads. A package ``__init__`` with a lazy map (``_WHERE = {name:
submodule}`` or ``_SUBPACKAGES``, read by its PEP 562 ``__getattr__``) reaches every module the
map names; those edges count for reachability only: they load a module when someone asks for
the name, and that someone's import is the edge the cycle check sees.

Entry points: train.py, eval_linear.py, every benchmarks/*.py, the console scripts of
pyproject.toml, ``python -m`` modules (``__main__.py``) and the ``infossl`` package itself (its
lazy maps are the public API). Tests are not entry points: a module only tests import is dead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train.py", "eval_linear.py")
LAZY_MAP_NAMES = ("_WHERE", "_SUBPACKAGES")
# ARCHITECTURE.md, "Rooms": the infossl rooms each room may import (a room is a subpackage, or
# a top-level module by itself).
ALLOWED = {
    # knife_regularizer reads its defaults (configs/regularizers/*.yaml) through infossl.config.
    "infossl.losses": {"infossl.losses", "infossl.distributed", "infossl.config"},
    "infossl.mi": {"infossl.mi", "infossl.losses"},
    "infossl.reliability": {
        *("infossl.reliability", "infossl.errors", "infossl.rundir", "infossl.lightning_compat"),
    },
    "infossl.data": {
        *("infossl.data", "infossl.config", "infossl.errors", "infossl.reliability"),
        *("infossl.runtime", "infossl.speed"),
    },
    "infossl.eval": {
        *("infossl.eval", "infossl.data", "infossl.losses", "infossl.methods"),
        *("infossl.backbones", "infossl.config", "infossl.config_schema", "infossl.errors"),
        *("infossl.reliability", "infossl.rundir", "infossl.runtime"),
    },
    "infossl.methods": {
        *("infossl.methods", "infossl.losses", "infossl.eval", "infossl.backbones"),
        *("infossl.callbacks", "infossl.config", "infossl.config_schema", "infossl.distributed"),
        *("infossl.errors", "infossl.reliability", "infossl.rundir", "infossl.lightning_compat"),
    },
}
COMMAND_LAYER = {"infossl.training", "infossl.cli", "infossl.cli_train", "infossl.cli_eval"}
COMMAND_LAYER |= {"infossl.console", "infossl.trainer_factory"}
NO_LIGHTNING = ("infossl.losses", "infossl.mi")
LIGHTNING = ("pytorch_lightning", "lightning_fabric", "lightning", "torchmetrics")
PLACEHOLDERS = ("todo", "tbd", "fixme", "xxx", "placeholder", "docstring", "module", "...")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files() -> list[Path]:
    files = sorted((ROOT / "infossl").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    return [*files, *(ROOT / s for s in SCRIPTS)]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST):
    """Every Import / ImportFrom in the tree except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def lazy_map(tree: ast.Module, package: str) -> dict[str, str]:
    """``{public name: module}`` of a package ``__init__``'s lazy map (empty when it has none)."""
    found = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Name) and target.id in LAZY_MAP_NAMES):
            continue
        value = ast.literal_eval(node.value)
        pairs = value.items() if isinstance(value, dict) else ((v, v) for v in value)
        found.update({name: f"{package}.{where}" for name, where in pairs})
    return found


def strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, 1972), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class Graph:
    def __init__(self):
        self.trees = {module_name(p): ast.parse(p.read_text(), str(p)) for p in python_files()}
        self.paths = {module_name(p): p for p in python_files()}
        self.packages = {m for m, p in self.paths.items() if p.name == "__init__.py"}
        self.lazy = {m: lazy_map(self.trees[m], m) for m in self.packages}
        self.imports: dict[str, set[str]] = {m: set() for m in self.trees}
        for module, tree in self.trees.items():
            for node in import_nodes(tree):
                self.imports[module] |= self._targets(module, node)
        self.imports = {m: targets - {m} for m, targets in self.imports.items()}

    def _known(self, name: str, importer: str) -> str | None:
        if name in self.trees:
            return name
        # benchmarks/ scripts import their helpers both as benchmarks._x and as _x (the
        # script's folder is sys.path[0]).
        if importer.startswith("benchmarks.") and f"benchmarks.{name}" in self.trees:
            return f"benchmarks.{name}"
        return None

    def _targets(self, importer: str, node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {t for alias in node.names if (t := self._known(alias.name, importer))}
        base = node.module or ""
        if node.level:
            package = importer if importer in self.packages else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}".rstrip(".")
        targets = set()
        package = self._known(base, importer)
        for alias in node.names:
            if sub := self._known(f"{base}.{alias.name}", importer):
                targets.add(sub)  # a submodule
            elif package is not None:
                targets.add(package)
                if alias.name in self.lazy.get(package, {}):
                    targets.add(self.lazy[package][alias.name])
        return targets

    def entry_points(self) -> set[str]:
        # [project.scripts] of pyproject.toml (tomllib is Python 3.11+; we support 3.10).
        pyproject = (ROOT / "pyproject.toml").read_text()
        section = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
        scripts = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', section, flags=re.M))
        roots = {"infossl", *(module_name(ROOT / s) for s in SCRIPTS)}
        roots |= {m for m in self.trees if m.startswith("benchmarks.")}
        roots |= {target.split(":")[0] for target in scripts.values()}
        roots |= {m for m in self.trees if m.endswith(".__main__")}
        return roots

    def reachable(self) -> set[str]:
        seen, stack = set(), sorted(self.entry_points())
        while stack:
            module = stack.pop()
            if module in seen:
                continue
            seen.add(module)
            stack.extend(self.imports[module] | set(self.lazy.get(module, {}).values()))
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parent = module.rpartition(".")[0]
            if parent in self.trees:
                stack.append(parent)
        return seen

    def cycles(self) -> list[list[str]]:
        """The import cycles between infossl modules, as strongly connected components."""
        graph = {
            m: sorted(t for t in targets if t.startswith("infossl"))
            for m, targets in self.imports.items()
            if m.startswith("infossl")
        }
        return strongly_connected(graph)

    def path_in(self, component: list[str]) -> list[str]:
        """One cycle through the component's first module, to name in a failure."""
        members, start = set(component), component[0]
        paths, queue = {start: [start]}, [start]
        while queue:
            v = queue.pop(0)
            for w in sorted(self.imports[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    queue.append(w)
        return component


def defined_names(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """The names a module (or class) body binds: functions, classes, assignments, imports."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update({t.id: node for t in targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update({(a.asname or a.name).split(".")[0]: node for a in node.names})
    return names


def room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or module in ALLOWED else module


def third_party(tree: ast.AST) -> set[str]:
    """The top-level names of the non-infossl modules a tree imports."""
    names = set()
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {"infossl"}


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph()


def test_the_graph_sees_the_imports_it_must(graph):
    # Module-level, function-level, lazy-map and benchmark-helper imports are all edges; a
    # TYPE_CHECKING import is not.
    assert "infossl.methods.base" in graph.imports["infossl.methods.infonce"]
    assert "infossl.mi.fit" in graph.imports["infossl.mi"]  # inside its __getattr__
    hidden = "if TYPE_CHECKING:\n    import infossl.x\nelse:\n    import infossl.y\n"
    assert [n.names[0].name for n in import_nodes(ast.parse(hidden))] == ["infossl.y"]
    assert graph.lazy["infossl.eval"]["knn_top1"] == "infossl.eval.knn"
    assert graph.lazy["infossl"]["losses"] == "infossl.losses"
    assert "benchmarks._shared" in graph.imports["benchmarks._versus_child"]  # from _shared
    roots = graph.entry_points()
    assert {"train", "eval_linear", "infossl.cli_train", "infossl.cli_eval"} <= roots
    assert {"infossl.mi.__main__", "benchmarks.versus"} <= roots


def test_the_cycle_finder_finds_a_cycle_and_only_it():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["d"]}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": ["b"], "b": []}) == []


def test_every_lazy_map_names_modules_that_exist(graph):
    for package, names in graph.lazy.items():
        missing = sorted({m for m in names.values() if m not in graph.trees})
        assert not missing, f"{package}'s lazy map names missing modules {missing}"


def test_no_import_cycle_between_infossl_modules(graph):
    cycles = [" -> ".join(graph.path_in(c)) for c in graph.cycles()]
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_every_infossl_module_is_reached_from_an_entry_point(graph):
    dead = sorted(m for m in graph.trees if m.startswith("infossl") and m not in graph.reachable())
    assert not dead, (
        f"no entry point (train.py, eval_linear.py, benchmarks/, the public API) reaches {dead}"
    )


def test_each_room_imports_only_the_rooms_architecture_md_allows(graph):
    broken = [
        f"{module} -> {target}"
        for module, targets in sorted(graph.imports.items())
        if room(module) in ALLOWED
        for target in sorted(targets)
        if target.startswith("infossl") and room(target) not in ALLOWED[room(module)]
    ]
    assert not broken, "imports ARCHITECTURE.md does not allow: " + "; ".join(broken)


def test_only_the_command_layer_imports_the_command_layer(graph):
    library = [m for m in graph.trees if m.startswith("infossl") and m not in COMMAND_LAYER]
    broken = [
        f"{m} -> {t}" for m in sorted(library) for t in sorted(graph.imports[m] & COMMAND_LAYER)
    ]
    assert not broken, broken


def test_losses_and_mi_are_plain_tensor_code_without_lightning(graph):
    broken = {
        module: sorted(third_party(tree) & set(LIGHTNING))
        for module, tree in graph.trees.items()
        if module.startswith(NO_LIGHTNING)
    }
    assert not {m: found for m, found in broken.items() if found}
    assert "torch" in third_party(graph.trees["infossl.losses.infonce"])  # the check sees imports


# Dotted names in ARCHITECTURE.md's prose that are not InfoSSL code: other libraries, keys of a
# checkpoint, and files.
FOREIGN_ROOTS = {"torch", "dist", "lightly", "F", "nn", "pl", "hyper_parameters", "state_dict"}
FILE_SUFFIXES = {"py", "yaml", "json", "pt", "ckpt", "md", "lock", "txt", "png"}


def _config_keys() -> set[str]:
    import yaml

    def flat(tree, prefix=""):
        for key, value in tree.items():
            yield f"{prefix}{key}"
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")

    return set(flat(yaml.safe_load((ROOT / "infossl" / "configs" / "base.yaml").read_text())))


def resolve_doc_name(graph: Graph, token: str) -> bool:
    """True when ``token`` (``module.name``, ``module.Class.method``, ``Class.method``, a module
    path, or a config key) names something that exists."""
    parts = token.split(".")
    if parts[0] in FOREIGN_ROOTS or parts[-1] in FILE_SUFFIXES or token in _config_keys():
        return True
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        modules = [m for m in graph.trees if m in (prefix, f"infossl.{prefix}")]
        modules = modules or [m for m in graph.trees if m.endswith(f".{prefix}")]
        if modules:
            return any(_defined(graph.trees[m].body, parts[i:]) for m in modules)
    return any(_defined(tree.body, parts) for tree in graph.trees.values())


def _defined(body: list[ast.stmt], names: list[str]) -> bool:
    if not names:
        return True
    node = defined_names(body).get(names[0])
    if node is None:
        return False
    if len(names) == 1:
        return True
    return isinstance(node, ast.ClassDef) and _defined(node.body, names[1:])


def test_every_code_name_architecture_md_mentions_exists(graph):
    text = (ROOT / "ARCHITECTURE.md").read_text()
    prose = re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)  # the walkthrough's own code
    tokens = set(re.findall(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(\))?`", prose))
    assert {"rundir.export_backbone", "BaseMethod.training_step", "data.views"} <= tokens
    stale = sorted(t for t in tokens if not resolve_doc_name(graph, t))
    # Python files it names exist here (main_vicreg.py is the official VICReg's).
    here = {path.name for path in python_files()} | {"main_vicreg.py"}
    stale += sorted(t for t in tokens if t.endswith(".py") and t not in here)
    assert not stale, f"ARCHITECTURE.md names what the code no longer has: {stale}"
    assert not resolve_doc_name(graph, "rundir.no_such_function")
    assert not resolve_doc_name(graph, "BaseMethod.no_such_method")


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_starts_with_a_docstring_whose_first_line_says_its_job(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=True)
    assert docstring, f"{path.relative_to(ROOT)} has no module docstring"
    first = docstring.splitlines()[0].strip()
    assert first.endswith("."), f"{path.relative_to(ROOT)}: first line is not a sentence: {first!r}"
    assert len(first.split()) >= 3, f"{path.relative_to(ROOT)}: first line too short: {first!r}"
    assert first.rstrip(".").strip().lower() not in PLACEHOLDERS, first
    assert not any(word in first.lower().split() for word in ("todo", "tbd", "fixme")), first
