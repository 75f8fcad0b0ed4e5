"""Probe: is a distribution installed at a version and its modules importable, or absent for good?

Usage: package_check.py NAME [VERSION] [--absent]. Prints one JSON line: ok, package, version, and detail or
error. When importing one of the distribution's modules fails in another package (a missing dependency,
a broken torch), also failed_import (our module), failing_package (the other's top-level module) and
error_line: then the install did what it was asked, and something else is wrong.

Which modules a distribution provides comes from the files it installed (RECORD), not its name (PyYAML
gives yaml, protobuf gives google.protobuf) nor top_level.txt alone, which may list paths
(sentencepiece: `sentencepiece/__init__`) or names that are no modules (`jsonpatch-stubs`).
"""

import importlib
import importlib.metadata
import json
import re
import sys
import sysconfig
import traceback
from pathlib import Path, PurePosixPath

# A module's file: `mod.py`, or an extension `mod.so`, `mod.abi3.so`, `mod.cpython-311-x86_64-linux-gnu.so`, `mod.pyd`.
MODULE_FILE = re.compile(r"([A-Za-z_]\w*)(?:\.py|(?:\.[\w-]+)?\.(?:so|pyd))")
# Top-level names sloppy wheels ship beside their package: importing them proves nothing (or runs setup()).
NOT_MODULES = {"setup", "conftest", "test", "tests", "docs", "examples", "benchmarks"}


def module_names(paths) -> set[str]:
    """Dotted names of the modules and regular packages among installed file paths (relative to site-packages)."""
    names = set()
    for path in paths:
        parts = PurePosixPath(str(path).replace("\\", "/")).parts
        dirs, match = parts[:-1], MODULE_FILE.fullmatch(parts[-1]) if parts else None
        # `..` (scripts), `x.dist-info`, `numpy.libs`, `foo-stubs` are no packages; nor are caches and bin/
        if match is None or not all(d.isidentifier() for d in dirs) or "__pycache__" in dirs or parts[0] == "bin":
            continue
        if match[1] != "__init__":
            names.add(".".join([*dirs, match[1]]))
        elif dirs:
            names.add(".".join(dirs))
    return names


def modules_from_files(paths) -> list[str]:
    """The public modules to import: each top-level module or package, and under a namespace dir (no
    __init__, like protobuf's `google`) the modules and packages inside it instead."""
    names = module_names(paths)

    def walk(prefix: str) -> list[str]:
        children = sorted({name[len(prefix) :].split(".")[0] for name in names if name.startswith(prefix)})
        found = []
        for child in children:
            if child.startswith("_") or (not prefix and child in NOT_MODULES):
                continue
            found += [prefix + child] if prefix + child in names else walk(prefix + child + ".")
        return found

    return walk("")


def declared_top_level(dist: importlib.metadata.Distribution) -> list[str]:
    """top_level.txt's names; an entry may be a path (`sentencepiece/__init__`, `foo/bar`): its first part."""
    lines = (line.strip().replace("\\", "/") for line in (dist.read_text("top_level.txt") or "").splitlines())
    names = {PurePosixPath(line).parts[0].removesuffix(".py") for line in lines if line}
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_") and n not in NOT_MODULES)


def importable_modules(dist: importlib.metadata.Distribution) -> list[str]:
    """From the files it installed; else top_level.txt (an editable install's RECORD holds only its hook).
    Only files that exist count: an egg-info's file list may be its source tree (SOURCES.txt, setup.py)."""
    installed = [f for f in dist.files or [] if dist.locate_file(f).exists()]
    return modules_from_files(installed) or declared_top_level(dist)


def own_top_names(dist: importlib.metadata.Distribution, modules: list[str]) -> set[str]:
    """Every top-level name the distribution owns, private and namespace ones included."""
    installed = module_names(dist.files or [])
    return {name.split(".")[0] for name in [*installed, *modules]} | set(declared_top_level(dist))


def import_root(filename: str) -> str | None:
    """The import path entry a source file was found under (the longest), None when it is off the path."""
    here = str(Path(__file__).resolve().parent)  # the probe's own dir, sys.path[0]: it is no package's
    roots = [p for p in sys.path if p and p != here and filename.startswith(p.rstrip("/") + "/")]
    return max(roots, key=len, default=None)


def failing_package(err: Exception, own: set[str]) -> str | None:
    """The other package an import failed in: the module missing or failing to load (ImportError.name),
    else the one holding the innermost frame outside the stdlib. None when the failure is the
    distribution's own, or cannot be placed."""
    if isinstance(err, ImportError) and err.name:
        top = err.name.split(".")[0]
        return None if top in own else top
    paths = sysconfig.get_paths()
    stdlib = {paths["stdlib"], paths["platstdlib"]} | {p for p in sys.path if p.endswith("lib-dynload")}
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        root = import_root(frame.filename)
        if frame.filename.startswith("<") or root in stdlib:  # importlib's frozen frames, ctypes, ...
            continue
        if root is None:
            return None
        first = PurePosixPath(frame.filename[len(root) :].lstrip("/")).parts[0]
        match = MODULE_FILE.fullmatch(first)
        top = match[1] if match else first
        return None if top in own else top
    return None


def error_line(err: Exception) -> str:
    message = str(err).strip().splitlines()
    return f"{type(err).__name__}: {message[0]}" if message else type(err).__name__


def main(name: str, version: str | None, absent: bool) -> int:
    report = {"ok": False, "package": name}
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if absent:
        report["ok"] = dist is None
        report["detail"] = f"{name} is not installed" if dist is None else f"{name} {dist.version} still installed"
        if dist is not None:
            report["error"] = report["detail"]
    elif dist is None:
        report["error"] = f"{name} is not installed"
    else:
        report["version"] = dist.version
        if version and dist.version.split("+")[0] != version.split("+")[0]:
            report["error"] = f"{name} is {dist.version}, wanted {version}"
        else:
            modules = importable_modules(dist)
            try:
                for module in modules:
                    importlib.import_module(module)
                report["ok"] = True
                report["detail"] = f"{name} {dist.version} installed; imports {', '.join(modules) or '(no modules)'}"
            except Exception as err:
                traceback.print_exc()
                other, line = failing_package(err, own_top_names(dist, modules)), error_line(err)
                report["error"] = f"{name} {dist.version} installed but importing {module} fails: {line}"
                if other is not None:
                    report.update(failed_import=module, failing_package=other, error_line=line)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(args[0], args[1] if len(args) > 1 else None, "--absent" in sys.argv))
