"""Precheck probe run inside a sandbox container: can the attempt run in this image at all?

Usage: container_check.py SPEC_JSON_PATH. Stdlib only. Spec keys: python ("3.11"), index_url,
find_links (dirs), device_nodes (globs), disk_path, disk_gb, shm_gb, cxx_required. Prints one JSON line:
{"ok": bool, "checks": [{"name", "ok", "detail", "required"}]}.
"""

import glob
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


def check(name, ok, detail, required=True):
    return {"name": name, "ok": bool(ok), "detail": detail, "required": required}


def fetch(url, timeout=10.0):
    """None when the URL answers (any HTTP status below 500), else why not."""
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None)
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            return None if reply.status < 500 else f"HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        return None if err.code < 500 else f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {getattr(err, 'reason', err)}"


def python_version(want):
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    return check("python", have == want, f"python {have} at {sys.executable} (recipe wants {want})")


def package_index(url, find_links):
    wheels = [d for d in find_links if os.path.isdir(d) and glob.glob(os.path.join(d, "*.whl"))]
    error = fetch(url)
    detail = f"{url} reachable" if error is None else f"{url} unreachable ({error})"
    if wheels:
        detail += f"; wheel dirs mounted: {', '.join(wheels)}"
    return check("package index", error is None or bool(wheels), detail)


def os_package_sources():
    uris = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
        uris += [u for line in re.findall(r"^\s*URIs:\s*(.+)$", text, re.M) for u in line.split()]
    for path in sorted(glob.glob("/etc/yum.repos.d/*.repo")):
        text = Path(path).read_text(errors="replace")
        uris += [
            u.replace("$basearch", os.uname().machine)
            for u in re.findall(r"^\s*baseurl\s*=\s*(\S+)", text, re.M)
            if "$releasever" not in u
        ]
    manager = next((m for m in ("apt-get", "dnf", "yum", "apk") if shutil.which(m)), None)
    if not uris:
        return check(
            "os packages",
            False,
            f"no package sources configured (package manager: {manager or 'none'})",
            required=False,
        )
    error = fetch(uris[0])
    return check(
        "os packages",
        error is None,
        f"{manager or 'no package manager'}; {uris[0]} " + ("reachable" if error is None else f"unreachable ({error})"),
        required=False,
    )


def cxx_compiler(required):
    """torch.compile's CPU backend (Inductor) builds C++; GPU backends only need C (Triton)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    return check(
        "c++ compiler",
        cxx is not None,
        f"C++ compiler {cxx}" if cxx else "no C++ compiler (g++) on PATH: torch.compile on CPU cannot build kernels",
        required=required,
    )


def compiler_and_headers():
    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if compiler is None:
        return [
            check("compiler", False, "no C compiler on PATH: torch.compile / Triton cannot build kernels"),
            check(
                "python headers",
                os.path.exists(os.path.join(include, "Python.h")),
                f"Python.h in {include}"
                if os.path.exists(os.path.join(include, "Python.h"))
                else f"no Python.h in {include}",
            ),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        Path(source).write_text("#include <Python.h>\nint main(void) { return Py_IsInitialized(); }\n")
        built = subprocess.run([compiler, "-fsyntax-only", f"-I{include}", source], capture_output=True, text=True)
    headers_ok = built.returncode == 0
    first_error = (built.stderr.strip().splitlines() or ["?"])[0][:200]
    return [
        check("compiler", True, f"C compiler {compiler}"),
        check(
            "python headers",
            headers_ok,
            f"Python.h in {include} compiles"
            if headers_ok
            else f"cannot compile against Python.h ({first_error}): install the python dev headers",
        ),
    ]


def device_nodes(patterns):
    if not patterns:
        return check("device nodes", True, "none needed")
    found = sorted({n for p in patterns for n in glob.glob(p)})
    return check(
        "device nodes",
        bool(found),
        f"{', '.join(found[:6])}" if found else f"none of {' '.join(patterns)} inside the container",
    )


def disk(path, needed_gb):
    free_gb = shutil.disk_usage(path).free / 2**30
    return check("disk", free_gb >= needed_gb, f"{free_gb:.0f} GiB free at {path}, ~{needed_gb:.0f} GiB needed")


def shm(min_gb):
    try:
        size_gb = shutil.disk_usage("/dev/shm").total / 2**30
    except OSError:
        return check("shm", False, "/dev/shm missing: vLLM's workers exchange tensors through it")
    return check("shm", size_gb >= min_gb, f"/dev/shm {size_gb:.1f} GiB")


def main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    checks = [
        python_version(spec.get("python", "3.11")),
        package_index(spec.get("index_url", "https://pypi.org/simple/pip/"), spec.get("find_links", [])),
        os_package_sources(),
        *compiler_and_headers(),
        cxx_compiler(bool(spec.get("cxx_required"))),
        device_nodes(spec.get("device_nodes", [])),
        disk(spec.get("disk_path", "/"), float(spec.get("disk_gb", 8))),
        shm(float(spec.get("shm_gb", 0.25))),
    ]
    print(json.dumps({"ok": all(c["ok"] for c in checks if c["required"]), "checks": checks}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
