"""The house's one-way flow, read from the code itself (ast): no import cycle among spd/,
theory/ and ablations/, theory/ imports nothing from spd, and no module imports another
module's private (`_`-prefixed) name. Imports inside functions count as much as top-level ones:
a deferred import still ties the two modules together."""
import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("spd", "theory", "ablations")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str, modules: dict) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import of one of our modules."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub, None) if sub in modules else (base, a.name))
    return [(m, n) for m, n in found if m.split(".")[0] in PACKAGES]


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph, private = {}, []
    for name, path in modules.items():
        graph[name] = set()
        for module, imported in _imports(path, name, modules):
            target = module if module in modules else module.rpartition(".")[0]
            if target in modules and target != name:
                graph[name].add(target)
            dunder = imported and imported.startswith("__") and imported.endswith("__")
            if imported and imported.startswith("_") and not dunder and module != name:
                private.append(f"{name} imports {module}.{imported}")
    return graph, private


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_spd_theory_and_ablations():
    graph, _ = _graph()
    assert len(graph) > 30  # every module was read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_theory_imports_nothing_from_spd():
    graph, _ = _graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("theory")
                 for t in targets if t.startswith(("spd", "ablations")))
    assert not bad, bad


def test_no_module_imports_another_modules_private_name():
    _, private = _graph()
    assert not private, private


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
