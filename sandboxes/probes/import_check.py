"""Probe: import the modules a recipe's later stages need. Prints one JSON line; exit 1 on the first failure.

Runs inside the sandbox's interpreter with only the standard library assumed.
"""

import importlib
import importlib.metadata
import json
import sys
import traceback


def version_of(module: str) -> str | None:
    top = module.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def main(modules: list[str]) -> int:
    report = {"ok": True, "modules": {}}
    for name in modules:
        try:
            importlib.import_module(name)
            report["modules"][name] = {"ok": True, "version": version_of(name)}
        except BaseException as err:  # an import can raise anything, SystemExit included
            traceback.print_exc()
            report["ok"] = False
            report["error"] = f"import {name}: {type(err).__name__}: {err}"
            report["modules"][name] = {"ok": False, "error": report["error"]}
            break
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
