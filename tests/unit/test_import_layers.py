"""The orchestrator's imports run one way: cli -> evidence -> control -> slot -> profiles -> base.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside a function
counts as much as one at the top: hiding an upward import in a function body does not pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"

#: Wing -> the wings it may import (besides itself). ``base`` is the top-level modules below
#: everything (errors, config, output, progress, vllm_argv, prometheus_text); ``images`` is a
#: wing of its own that only the CLI uses.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "profiles": {"base"},
    "images": {"base"},
    "slot": {"profiles", "base"},
    "control": {"slot", "profiles", "base"},
    "evidence": {"control", "slot", "profiles", "base"},
    "cli": {"evidence", "control", "slot", "profiles", "images", "base"},
    "main": {"cli"},
}
WINGS = {"profiles", "images", "slot", "control", "evidence", "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def wing(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"  # the package itself
    if parts[1] == "__main__":
        return "main"
    return parts[1] if parts[1] in WINGS else "base"


def imports_of(path: Path) -> set[str]:
    """Every ``orchestrator`` module this file imports, anywhere in it, resolved to a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            found.add(source)
            # ``from orchestrator.x import y`` may name a module y: count it when it is one
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                if candidate in MODULES:
                    found.add(candidate)
    return {name for name in found if name == "orchestrator" or name.startswith("orchestrator.")}


MODULES: dict[str, Path] = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH: dict[str, set[str]] = {
    name: {target for target in imports_of(path) if target != name and target in MODULES}
    for name, path in MODULES.items()
}


def test_every_module_of_the_package_is_seen() -> None:
    assert "orchestrator.cli.main" in GRAPH
    assert "orchestrator.control.switch" in GRAPH["orchestrator.control.writer"]
    assert "orchestrator.control.writer" in GRAPH["orchestrator.evidence.gate"]


def test_imports_only_run_downward() -> None:
    upward = [
        f"{source} ({wing(source)}) imports {target} ({wing(target)})"
        for source, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if wing(target) != wing(source)
        and target != "orchestrator"  # the package's empty __init__
        and wing(target) not in ALLOWED[wing(source)]
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    """Depth-first over the module graph; every back edge found is a cycle, reported whole."""
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(GRAPH[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])
    assert cycles == []


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_policy_never_imports_docker() -> None:
    """The controller and the switch reach Docker only through the ``Slot`` Protocol."""
    direct = sorted(
        name
        for name, path in MODULES.items()
        if wing(name) == "control" and "docker" in _third_party_imports(path)
    )
    assert direct == []
    assert "docker" in _third_party_imports(MODULES["orchestrator.slot.docker_slot"])  # sees it
