"""Probe: is a distribution installed at a version and its modules importable, or absent for good?

Usage: package_check.py NAME [VERSION] [--absent]. Prints one JSON line.
"""

import importlib
import importlib.metadata
import json
import sys
import traceback


def top_level_modules(dist: importlib.metadata.Distribution) -> list[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("_")]
    names = {str(f).split("/")[0].removesuffix(".py") for f in (dist.files or [])
             if not str(f).split("/")[0].endswith((".dist-info", ".data")) and "/" in str(f)}
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_"))


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
            modules = top_level_modules(dist)
            try:
                for module in modules:
                    importlib.import_module(module)
                report["ok"] = True
                report["detail"] = f"{name} {dist.version} installed; imports {', '.join(modules) or '(no modules)'}"
            except Exception as err:
                traceback.print_exc()
                report["error"] = f"{name} {dist.version} installed but import fails: {type(err).__name__}: {err}"
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(args[0], args[1] if len(args) > 1 else None, "--absent" in sys.argv))
