"""The shape of the tree: a package per stage, no import circles, no CLI in library code, no private names
borrowed across packages, no god modules. Reads the source with `ast`; function-level imports count,
imports under `if TYPE_CHECKING:` do not."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "emplifai"
MAX_LINES = 500
MAX_ROOT_MODULES = 6


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py") if "migrations" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    walk(sub)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_pkg = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _edges() -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} for the project's own modules."""
    out: dict[str, set[tuple[str, str | None]]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out[mod] |= {(a.name, None) for a in node.names if a.name.split(".")[0] == "emplifai"}
                continue
            target = _resolve(mod, node)
            if target.split(".")[0] != "emplifai":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out[mod].add((sub, None) if sub in MODULES else (target, a.name))
    return out


def _owner(name: str) -> str:
    """The module an import refers to: itself if it is one, else its longest known prefix."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _package(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def test_no_import_circles() -> None:
    graph = {m: {_owner(t) for t, _ in es} - {m} for m, es in _edges().items()}
    # A package's __init__ importing its own submodules is how it re-exports; the circle that counts is between
    # modules that use each other.
    for m in graph:
        if MODULES[m].name == "__init__.py":
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}

    def path(a: str, b: str) -> list[str] | None:
        """A shortest import path a → … → b, if any."""
        seen, todo = {a: [a]}, [a]
        while todo:
            m = todo.pop(0)
            for t in sorted(graph.get(m, ())):
                if t not in seen:
                    seen[t] = [*seen[m], t]
                    todo.append(t)
        return seen.get(b)

    cycles = sorted({" → ".join(c) for a in graph for b in graph[a] if (back := path(b, a)) for c in [[a, *back]]})
    assert cycles == [], "import circles:\n" + "\n".join(cycles)


def test_library_code_never_imports_the_cli() -> None:
    bad = sorted(f"{m} → {t}" for m, es in _edges().items() if not m.startswith("emplifai.cli")
                 for t, _ in es if _owner(t).startswith("emplifai.cli"))
    assert bad == []


def test_no_private_name_across_packages() -> None:
    bad = []
    for m, es in _edges().items():
        for t, name in es:
            owner = _owner(t)
            private_mod = any(p.startswith("_") and p != "__init__" for p in owner.split(".")[1:])
            private_name = name is not None and name.startswith("_") and name != "__version__"
            if (private_mod or private_name) and _package(owner) != _package(m):
                bad.append(f"{m} → {t}{'.' + name if name else ''}")
    assert sorted(bad) == []


def test_at_most_six_loose_modules_at_the_root() -> None:
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_ROOT_MODULES, loose


def test_no_god_modules() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}
