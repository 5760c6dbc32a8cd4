"""The package's shape (docs/architecture.md): no import cycles, modules and functions of a readable size
(or a stated reason), nothing that points at files a user's clone does not have."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dialogsmith"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100
# A module or function may be longer when it says why, in a comment containing this marker.
LONG_REASON = "long because:"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The dialogsmith modules ``name`` imports, anywhere in it (a function-level import is a dependency
    too). ``from pkg import sub`` is an import of ``pkg.sub`` when ``sub`` is a module, else of ``pkg``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dialogsmith")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dialogsmith"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES and m != name}


def test_no_import_cycles():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # a package's __init__ importing its own submodules is how packages re-export: not a back edge
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_reference_to_files_a_users_clone_lacks():
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{i}"
        for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.c")]
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.\./shared|/work/shared|\bshared/(specs|golden|gpt2|fixtures)", line)
    ]
    assert not bad, bad


def test_no_issue_labels_or_machine_specific_claims_in_the_package():
    pattern = re.compile(r"\bissue \d+\b|dev box|idle cores|this machine\b", re.I)
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_and_function_sizes(name):
    text = MODULES[name].read_text()
    lines = text.splitlines()
    if len(lines) > MAX_MODULE_LINES:
        assert LONG_REASON in "\n".join(lines[:60]), (
            f"{name}: {len(lines)} lines (> {MAX_MODULE_LINES}) and no '{LONG_REASON}' comment near the top"
        )
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                assert LONG_REASON in body, (
                    f"{name}.{node.name}: {length} lines (> {MAX_FUNCTION_LINES}) and no '{LONG_REASON}' comment"
                )
