"""The layers hold: the import graph of api/, db/, rmscore/ and worker/ has no cycle and no import that
goes up a floor, and torch stays in worker/.

Bottom to top: the shared core `rmscore/` (its command line `rmscore/cli` aside), then `db/` (the
store and the producer), then `worker/` (the model), then `api/` and `rmscore/cli`. A module may import
its own floor and the ones below. Checked on the source (parsed, never imported), so a break fails here
before it fails in an image that ships without a package (the API image has no worker/).
Imports under `if TYPE_CHECKING:` are not dependencies at run time and are skipped; imports inside
functions are (they run when called) and count.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "db", "rmscore", "worker")
# (importer, imported): the floors that may never be imported from there.
FORBIDDEN = (("api", "worker"), ("db", "worker"), ("db", "api"), ("worker", "api"))
CORE_MAY_NOT = ("api", "db", "worker")  # the shared core sits under everything
TOP_FLOOR = "rmscore.cli"  # the command line is the core's top floor: it may import anything


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name the file imports (`from a import b` gives `a` and `a.b`), outside TYPE_CHECKING."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                out.add(base)
                out.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


@cache
def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the four packages (Alembic's migrations aside)."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _resolve(name: str) -> str | None:
    """The project module a dotted import name lands in (`db.jobs.create_job` -> `db.jobs`), if any."""
    mods = modules()
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports (a package importing its own children is no edge)."""
    edges: dict[str, frozenset[str]] = {}
    for module, path in modules().items():
        deps = {_resolve(n) for n in _imported_names(path, module)}
        edges[module] = frozenset(d for d in deps if d and d != module and not module.startswith(d + "."))
    return edges


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
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
    return found


def _floor(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read() -> None:
    """A guard on the checks below: they see the real modules and the real edges."""
    edges = graph()
    assert {"api.main", "db.jobs", "rmscore.settings", "worker.runner"} <= set(edges)
    assert "db.jobs" in edges["db.producer"] and "rmscore.broker" in edges["db.producer"]
    # The helpers find what they are written to find: torch where it is, a cycle where there is one.
    assert "torch" in _imported_names(modules()["worker.engine"], "worker.engine")
    assert cycles({"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset({"a"})}) == [["a", "b"]]


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_floor_imports_a_floor_it_must_not() -> None:
    broken = sorted(
        f"{m} -> {d}"
        for m, deps in graph().items()
        for d in deps
        for importer, imported in FORBIDDEN
        if _floor(m) == importer and _floor(d) == imported
    )
    assert not broken, "api/ and db/ never import worker/, db/ and worker/ never import api/:\n" + "\n".join(broken)


def test_the_shared_core_imports_none_of_api_db_worker() -> None:
    broken = sorted(
        f"{m} -> {d}"
        for m, deps in graph().items()
        for d in deps
        if _floor(m) == "rmscore" and m != TOP_FLOOR and not m.startswith(TOP_FLOOR + ".") and _floor(d) in CORE_MAY_NOT
    )
    assert not broken, "rmscore/ (its cli aside) is the floor under all: it imports none of api, db, worker:\n" + (
        "\n".join(broken)
    )


def test_torch_only_in_worker() -> None:
    outside = sorted(
        m
        for m, path in modules().items()
        if _floor(m) != "worker" and any(n == "torch" or n.startswith("torch.") for n in _imported_names(path, m))
    )
    assert not outside, f"torch is imported outside worker/ by {outside}"


# --------------------------------------------------------------------------- the docs match the tree

PATH = re.compile(r"^(?:api|db|rmscore|worker|tests|bench|docker)/[\w./-]*$")


def _product_modules() -> set[str]:
    return {
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name != "__init__.py" and "migrations" not in p.parts
    }


def _module_map() -> set[str]:
    """The modules ARCHITECTURE.md's "Every module" list names: in each bullet the first path is the
    package, a later `sub/` the folder the names after it sit in, and `name.py` a module there."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8").split("## Every module", 1)[1]
    named: set[str] = set()
    for bullet in re.split(r"\n- ", text)[1:]:
        tokens = re.findall(r"`([^`]+)`", bullet)
        here = package = tokens[0]
        for token in tokens[1:]:
            if token.endswith("/"):
                here = package + token
                assert (ROOT / here).is_dir(), f"ARCHITECTURE.md names a folder that is not there: {here}"
            elif token.endswith(".py"):
                named.add(here + token)
    return named


def test_architecture_md_maps_every_module_and_only_real_ones() -> None:
    named, tree = _module_map(), _product_modules()
    assert len(tree) > 80, "the tree is read"
    assert not tree - named, f"modules ARCHITECTURE.md does not place: {sorted(tree - named)}"
    assert not named - tree, f"ARCHITECTURE.md names modules that are not in the tree: {sorted(named - tree)}"


def test_every_path_the_layout_docs_name_exists() -> None:
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    arch = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8").split("## Every module", 1)[0]
    paths = {t for t in re.findall(r"`([^`\s]+)`", arch) if PATH.match(t)}
    paths |= {m.group(0).rstrip(".,;:)") for m in re.finditer(r"\b(?:tests|bench|docker)/[\w./-]+", layout)}
    paths |= {d + "/" for d in re.findall(r"^(\w+)/\s", layout.split("```")[1], re.MULTILINE)}
    assert len(paths) > 20, paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README's Layout or ARCHITECTURE.md name paths that are not in the tree: {missing}"
