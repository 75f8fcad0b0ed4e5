"""The layering, read from the code's own imports (module level and inside functions).

core  <  kernels  <  sandboxes  <  tools  <  evals  <  playbooks  <  agents  <  shell

A folder imports only from its own layer or those below it; the core imports nothing else from the
project; nothing imports the shell; the probes (run inside sandboxes, which have no fr_agent) and the
kernel files (loaded there by path) import nothing from fr_agent at all."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

LAYERS = ("core", "kernels", "sandboxes", "tools", "evals", "playbooks", "agents", "shell")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(f"fr_agent.{name}")
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def layer_of_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "fr_agent":
        return None
    if len(parts) == 1:
        return "core"  # fr_agent/__init__: the version only
    return parts[1] if parts[1] in LAYERS else "shell" if parts[1] == "__main__" else "core"


def imports_of(path: Path, package: str) -> list[tuple[int, str]]:
    """Every fr_agent module a file imports, wherever the import statement is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found += [(node.lineno, module)]
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if module == "fr_agent"]
    return [(line, name) for line, name in found if name.split(".")[0] == "fr_agent"]


def project_files() -> list[tuple[str, Path, str]]:
    """(layer, file, package) for every Python file of the project."""
    files = []
    for layer in LAYERS:
        root = package_dir(layer)
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            package = ".".join(["fr_agent", layer, *rel.parts[:-1]])
            files.append((layer, path, package))
    root = package_dir("core").parent
    files += [("core", root / "__init__.py", "fr_agent"), ("shell", root / "__main__.py", "fr_agent")]
    return files


def violations() -> list[str]:
    found = []
    for layer, path, package in project_files():
        isolated = "probes" in path.parts or (layer == "kernels" and path.name not in ("__init__.py",))
        for line, module in imports_of(path, package):
            target = layer_of_module(module)
            where = f"{path.name}:{line} imports {module}"
            if isolated:
                found.append(f"{layer}/{where}: runs where fr_agent is not installed")
            elif target is not None and LAYERS.index(target) > LAYERS.index(layer):
                found.append(f"{layer}/{where}: {target} is above {layer}")
    return found


def test_every_folder_imports_only_downward():
    assert violations() == []


def test_the_core_imports_nothing_else_from_the_project():
    for layer, path, package in project_files():
        if layer == "core":
            assert all(layer_of_module(m) == "core" for _, m in imports_of(path, package)), path


def test_folder_graph_has_no_cycles():
    edges = set()
    for layer, path, package in project_files():
        edges |= {(layer, layer_of_module(m)) for _, m in imports_of(path, package)} - {(layer, layer)}
    assert not {(a, b) for a, b in edges if (b, a) in edges}


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from fr_agent.shell.runs import Run\n", "shell"),
        ("def f():\n    from fr_agent.agents import repair\n", "agents"),
        ("import fr_agent.playbooks.diagnose\n", "playbooks"),
    ],
)
def test_the_check_sees_imports_anywhere_in_a_file(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert [layer_of_module(m) for _, m in imports_of(path, "fr_agent.tools")] == [expected]
