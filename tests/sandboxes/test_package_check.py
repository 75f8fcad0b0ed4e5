"""sandboxes/probes/package_check.py: which modules a distribution provides (from its metadata, on real
distributions of this venv and on dist-info dirs written here), and the probe run as the sandbox runs it,
a subprocess answering with one JSON line."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "sandboxes" / "probes" / "package_check.py"
_spec = importlib.util.spec_from_file_location("package_check", PROBE)
package_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(package_check)


@pytest.mark.parametrize(
    "name, modules",
    [
        ("PyYAML", ["yaml"]),  # and the private _yaml
        ("protobuf", ["google.protobuf"]),  # a namespace package, no top_level.txt
        ("pillow", ["PIL"]),
        ("python-dateutil", ["dateutil"]),
        ("jsonpatch", ["jsonpatch", "jsonpatch_cli"]),  # its top_level.txt also lists `jsonpatch-stubs`
        ("typing_extensions", ["typing_extensions"]),  # one module file
        ("torch", ["functorch", "torch", "torchgen"]),
    ],
)
def test_modules_of_installed_distributions(name, modules):
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here")
    assert package_check.importable_modules(dist) == modules


@pytest.mark.parametrize(
    "files, modules",
    [
        (
            [
                "sentencepiece/__init__.py",
                "sentencepiece/_sentencepiece.cpython-311-x86_64-linux-gnu.so",
                "sentencepiece/package_data/nfkc.bin",
                "sentencepiece.libs/libgomp-6a29c32d.so.1.0.0",
                "sentencepiece-0.2.3.dist-info/RECORD",
            ],
            ["sentencepiece"],
        ),
        (["cv2/__init__.py", "cv2/cv2.abi3.so", "opencv_python.libs/libavcodec.so.59"], ["cv2"]),
        (
            [
                "sklearn/__init__.py",
                "sklearn/_loss/_loss.cpython-311-x86_64-linux-gnu.so",
                "scikit_learn.libs/libgomp.so.1",
            ],
            ["sklearn"],
        ),
        (["bs4/__init__.py", "bs4/builder/__init__.py"], ["bs4"]),
        (
            ["google/protobuf/__init__.py", "google/protobuf/message.py", "google/_upb/_message.abi3.so"],
            ["google.protobuf"],
        ),
        (["azure/storage/blob/__init__.py", "azure/storage/blob/_models.py"], ["azure.storage.blob"]),
        (["six.py", "__pycache__/six.cpython-311.pyc"], ["six"]),
        (["fastmod.cpython-311-x86_64-linux-gnu.so", "other.abi3.so", "win.pyd"], ["fastmod", "other", "win"]),
        (
            [
                "../../../bin/tool",
                "bin/helper.py",
                "tool-1.0.data/scripts/tool",
                "tool.pth",
                "README.md",
                "tool-stubs/__init__.pyi",
                "__init__.py",
                "tests/__init__.py",
                "setup.py",
                "_private.py",
                "tool/__init__.py",
            ],
            ["tool"],
        ),
        (["pkg\\__init__.py", "pkg\\mod.py"], ["pkg"]),  # a RECORD written on Windows
    ],
)
def test_modules_from_record_paths(files, modules):
    assert package_check.modules_from_files(files) == modules


def dist_info(
    site: Path,
    name: str,
    version: str,
    top_level: str | None = None,
    files: dict[str, str] | None = None,
    record: bool = True,
) -> importlib.metadata.Distribution:
    """A dist-info dir in `site` (with the files it lists written there too), as an installer leaves it."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)
    for path, text in (files or {}).items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    if record:
        (info / "RECORD").write_text("".join(f"{path},,\n" for path in [*(files or {}), f"{info.name}/RECORD"]))
    return importlib.metadata.PathDistribution(info)


def test_top_level_paths_become_their_package(tmp_path):
    """sentencepiece 0.2.3 lists its module files as paths; the import is `sentencepiece`."""
    dist = dist_info(
        tmp_path,
        "sentencepiece",
        "0.2.3",
        "sentencepiece\nsentencepiece/__init__\nsentencepiece/_version\n",
        {"sentencepiece/__init__.py": "", "sentencepiece/_version.py": ""},
    )
    assert package_check.importable_modules(dist) == ["sentencepiece"]
    bare = dist_info(
        tmp_path / "no-record",
        "spm-like",
        "1.0",
        "spm_like/__init__\nfoo/bar\nfoo-stubs\n_priv\nbaz.py\n",
        record=False,
    )
    assert package_check.importable_modules(bare) == ["baz", "foo", "spm_like"]


def test_record_only_and_namespace_distributions(tmp_path):
    record_only = dist_info(
        tmp_path,
        "fr-record-only",
        "1.0",
        None,
        {"fr_pkg/__init__.py": "", "fr_single.py": "", "fr_ext.cpython-311-x86_64-linux-gnu.so": ""},
    )
    assert package_check.importable_modules(record_only) == ["fr_ext", "fr_pkg", "fr_single"]
    namespace = dist_info(
        tmp_path, "fr-ns-proto", "1.0", "frns\n", {"frns/proto/__init__.py": "", "frns/_upb/_m.abi3.so": ""}
    )
    assert package_check.importable_modules(namespace) == ["frns.proto"]


def test_listed_files_that_do_not_exist_do_not_count(tmp_path):
    """An egg-info's file list can be its source tree (setup.py, src/...): top_level.txt then decides."""
    dist = dist_info(tmp_path, "fr-egg", "1.0", "fr_egg\n", {"fr_egg/__init__.py": ""}, record=False)
    (tmp_path / "fr_egg-1.0.dist-info" / "RECORD").write_text("setup.py,,\nsrc/fr_egg/__init__.py,,\n")
    assert package_check.importable_modules(dist) == ["fr_egg"]


def run_probe(site: Path, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, env=env, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line:\n{proc.stdout}\n{proc.stderr}"
    verdict = json.loads(lines[0])
    assert proc.returncode == (0 if verdict["ok"] else 1), proc.stderr
    return verdict, proc


def test_probe_imports_a_sentencepiece_like_distribution(tmp_path):
    dist_info(
        tmp_path,
        "fr-spm",
        "0.2.3",
        "fr_spm\nfr_spm/__init__\nfr_spm/_version\n",
        {"fr_spm/__init__.py": "from fr_spm._version import v\n", "fr_spm/_version.py": "v = 1\n"},
    )
    verdict, _ = run_probe(tmp_path, "fr-spm", "0.2.3")
    assert verdict == {
        "ok": True,
        "package": "fr-spm",
        "version": "0.2.3",
        "detail": "fr-spm 0.2.3 installed; imports fr_spm",
    }
    assert run_probe(tmp_path, "fr-spm", "0.3.0")[0]["error"] == "fr-spm is 0.2.3, wanted 0.3.0"
    assert run_probe(tmp_path, "fr-not-here", "--absent")[0]["ok"]


def test_probe_names_a_failure_in_another_package(tmp_path):
    """A missing dependency, or a dependency that breaks on import, is not the distribution's own failure."""
    dist_info(tmp_path, "fr-needs-dep", "1.0", None, {"fr_needs_dep/__init__.py": "import fr_absent_dep.sub\n"})
    dist_info(tmp_path, "fr-uses-broken", "1.0", None, {"fr_uses_broken/__init__.py": "import fr_broken\n"})
    dist_info(
        tmp_path, "fr-broken", "1.0", None, {"fr_broken/__init__.py": "import ctypes\nctypes.CDLL('libcudart.so.99')\n"}
    )
    verdict, proc = run_probe(tmp_path, "fr-needs-dep")
    assert verdict["failing_package"] == "fr_absent_dep" and verdict["failed_import"] == "fr_needs_dep"
    assert verdict["error_line"] == "ModuleNotFoundError: No module named 'fr_absent_dep'"
    assert "Traceback" in proc.stderr
    verdict, _ = run_probe(tmp_path, "fr-uses-broken")
    assert verdict["failing_package"] == "fr_broken" and verdict["error_line"].startswith("OSError: libcudart.so.99")
    own, _ = run_probe(tmp_path, "fr-broken")  # the same error in the distribution's own code is its own
    assert not own["ok"] and "failing_package" not in own
    assert own["error"].startswith("fr-broken 1.0 installed but importing fr_broken fails: OSError: libcudart.so.99")
