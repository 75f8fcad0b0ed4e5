"""Diagnosis benchmark: accuracy on a corpus of real, labelled failure logs, and throughput on a big log.

    python -m fr_agent.shell.bench_diagnose [--corpus tests/data/diagnose] [--big-mb 256] [--json] [-v]
    fr-agent bench diagnose ...

Corpus layout: `labels.yaml` (a list of {file, category, params, source, fix}) and `logs/<file>`.
Category accuracy: the diagnosis names the labelled category. Parameter accuracy, over the logs whose
label has params: the category is right and every labelled param has the labelled value (package
names compared the way pip does, numbers as numbers). Throughput: a synthetic log of --big-mb MB
(vLLM-style INFO lines with the error in the middle and at the end) is diagnosed from a file;
the script prints ms per MB and the peak memory the diagnosis allocated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fr_agent.core.errors import FrAgentError
from fr_agent.playbooks.diagnose import Category, diagnose_log

DEFAULT_CORPUS = Path("tests/data/diagnose")
CATEGORIES = ("install_dependency", "set_env_var", "patch_operator", "fix_serve_config", "unrepairable", "unknown")


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    category: Category
    params: dict[str, Any] = Field(default_factory=dict)
    source: str
    fix: str
    note: str | None = None


class Outcome(BaseModel):
    file: str
    expected: Category
    got: Category
    expected_params: dict[str, Any]
    got_params: dict[str, Any]
    category_ok: bool
    params_ok: bool | None
    playbook: str | None
    ms: float
    bytes: int


class Report(BaseModel):
    corpus: str
    logs: int
    category_accuracy: float
    param_accuracy: float
    param_logs: int
    per_category: dict[str, dict[str, float]]
    ms_per_log: float
    big_log: dict[str, float] | None = None
    misses: list[Outcome]


def load_labels(corpus: Path) -> list[Label]:
    path = corpus / "labels.yaml"
    if not path.is_file():
        raise FrAgentError(f"no labels.yaml in {corpus}")
    try:
        labels = [Label.model_validate(raw) for raw in yaml.safe_load(path.read_text()) or []]
    except (yaml.YAMLError, ValidationError) as err:
        raise FrAgentError(f"broken {path}: {str(err).splitlines()[0]}") from None
    missing = [label.file for label in labels if not (corpus / "logs" / label.file).is_file()]
    if missing:
        raise FrAgentError(f"labels.yaml names logs that are not there: {', '.join(missing[:5])}")
    return labels


def same_value(key: str, want: Any, got: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(want) - float(got)) < 1e-9
    if key in ("package", "name", "op", "key", "plugin"):
        norm = (lambda v: re.sub(r"[-_.]+", "-", str(v)).lower()) if key == "package" else str
        return norm(want) == norm(got)
    return str(want).lower() == str(got).lower()


def params_match(want: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(key in got and same_value(key, value, got[key]) for key, value in want.items())


def evaluate(corpus: Path) -> list[Outcome]:
    outcomes = []
    labels = load_labels(corpus)
    if labels:  # compile the playbook regexes once, outside the timings
        diagnose_log(corpus / "logs" / labels[0].file, "bench")
    for label in labels:
        path = corpus / "logs" / label.file
        started = time.perf_counter()
        diagnosis = diagnose_log(path, "bench")
        ms = (time.perf_counter() - started) * 1000
        category_ok = diagnosis.category == label.category
        params_ok = (category_ok and params_match(label.params, diagnosis.params)) if label.params else None
        outcomes.append(
            Outcome(
                file=label.file,
                expected=label.category,
                got=diagnosis.category,
                expected_params=label.params,
                got_params=diagnosis.params,
                category_ok=category_ok,
                params_ok=params_ok,
                playbook=diagnosis.playbook,
                ms=round(ms, 3),
                bytes=path.stat().st_size,
            )
        )
    return outcomes


def big_log_throughput(size_mb: int, directory: Path) -> dict[str, float]:
    """Diagnose a synthetic `size_mb` MB log from disk: ms per MB and peak Python memory (MB)."""
    path = directory / f"big-{size_mb}mb.log"
    line = (
        b"(VllmWorker rank=0 pid=4242) INFO 11-23 11:08:37 [gpu_model_runner.py:1510] step 1234 ok, "
        b"throughput 330.1 tokens/s \xff stray byte\n"
    )
    block = line * ((1 << 20) // len(line) + 1)
    with path.open("wb") as handle:
        for index in range(size_mb):
            handle.write(block[: 1 << 20])
            if index == size_mb // 2:
                handle.write(b"WARNING 11-23 11:08:37 [utils.py:1] No module named 'yaml' (optional)\n")
        handle.write(
            b"(EngineCore_DP0 pid=4242) ERROR 11-23 11:08:37 [core.py:1510] ValueError: To serve at least one "
            b"request with the models's max seq len (32768), (4.00 GiB KV cache is needed, which is larger than "
            b"the available KV cache memory (1.25 GiB). Based on the available memory, the estimated maximum "
            b"model length is 10240. Try increasing `gpu_memory_utilization` or decreasing `max_model_len`.\n"
        )
    size = path.stat().st_size
    read_first = plain_read_seconds(path)  # the baseline, measured in the same run (and it warms the page cache)
    tracemalloc.start()
    started = time.perf_counter()
    diagnosis = diagnose_log(path, "bench")
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    baseline = min(read_first, plain_read_seconds(path))
    path.unlink()
    if diagnosis.params != {"key": "max_model_len", "value": 10240}:
        raise FrAgentError(f"big-log diagnosis went wrong: {diagnosis.params}")
    mb = size / 2**20
    return {
        "mb": round(mb, 1),
        "seconds": round(seconds, 3),
        "ms_per_mb": round(seconds * 1000 / mb, 3),
        "peak_mb": round(peak / 2**20, 1),
        "read_ms_per_mb": round(baseline * 1000 / mb, 3),
        "ratio_vs_read": round(seconds / baseline, 2) if baseline else 0.0,
    }


def plain_read_seconds(path: Path) -> float:
    """Reading every byte of the file in 8 MB chunks and nothing else: what no diagnosis can beat."""
    started = time.perf_counter()
    with path.open("rb") as handle:
        while handle.read(8 << 20):
            pass
    return time.perf_counter() - started


def summarize(corpus: Path, outcomes: list[Outcome], big: dict[str, float] | None) -> Report:
    per: dict[str, dict[str, float]] = defaultdict(
        lambda: {"logs": 0, "category_ok": 0, "param_logs": 0, "params_ok": 0}
    )
    for o in outcomes:
        row = per[o.expected]
        row["logs"] += 1
        row["category_ok"] += o.category_ok
        if o.params_ok is not None:
            row["param_logs"] += 1
            row["params_ok"] += o.params_ok
    table = {}
    for category in CATEGORIES:
        if category in per:
            row = per[category]
            table[category] = {
                "logs": row["logs"],
                "category_accuracy": round(row["category_ok"] / row["logs"], 4),
                "param_logs": row["param_logs"],
                "param_accuracy": round(row["params_ok"] / row["param_logs"], 4) if row["param_logs"] else 1.0,
            }
    param_outcomes = [o for o in outcomes if o.params_ok is not None]
    return Report(
        corpus=str(corpus),
        logs=len(outcomes),
        category_accuracy=round(sum(o.category_ok for o in outcomes) / len(outcomes), 4) if outcomes else 0.0,
        param_accuracy=round(sum(bool(o.params_ok) for o in param_outcomes) / len(param_outcomes), 4)
        if param_outcomes
        else 0.0,
        param_logs=len(param_outcomes),
        per_category=table,
        ms_per_log=round(sum(o.ms for o in outcomes) / len(outcomes), 3) if outcomes else 0.0,
        big_log=big,
        misses=[o for o in outcomes if not o.category_ok or o.params_ok is False],
    )


def run(corpus: Path = DEFAULT_CORPUS, big_mb: int = 0, scratch: Path | None = None) -> Report:
    outcomes = evaluate(corpus)
    big = big_log_throughput(big_mb, scratch or Path("/tmp")) if big_mb else None
    return summarize(corpus, outcomes, big)


def render(report: Report, verbose: bool) -> str:
    out = [
        f"diagnosis benchmark: {report.logs} real logs in {report.corpus}",
        "",
        f"{'category':<20}{'logs':>6}{'category acc':>14}{'param logs':>12}{'param acc':>11}",
    ]
    for category, row in report.per_category.items():
        out.append(
            f"{category:<20}{int(row['logs']):>6}{row['category_accuracy']:>14.1%}{int(row['param_logs']):>12}"
            f"{row['param_accuracy']:>11.1%}"
        )
    out.append(
        f"{'all':<20}{report.logs:>6}{report.category_accuracy:>14.1%}{report.param_logs:>12}{report.param_accuracy:>11.1%}"
    )
    out.append(f"\nspeed on the corpus: {report.ms_per_log} ms per log (mean, warm)")
    if report.big_log:
        b = report.big_log
        out.append(
            f"big log: {b['mb']} MB in {b['seconds']} s = {b['ms_per_mb']} ms/MB, peak {b['peak_mb']} MB allocated; "
            f"baseline (plain read of the file, same run): {b['read_ms_per_mb']} ms/MB, ratio {b['ratio_vs_read']}x"
        )
    if verbose and report.misses:
        out.append("\nmisses:")
        for o in report.misses:
            out.append(
                f"  {o.file}: expected {o.expected} {json.dumps(o.expected_params)}, got {o.got} "
                f"{json.dumps(o.got_params)} ({o.playbook})"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fr_agent.shell.bench_diagnose", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--big-mb", type=int, default=0, help="also time a synthetic log of this many MB")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the misses")
    args = parser.parse_args(argv)
    try:
        report = run(args.corpus, args.big_mb)
    except FrAgentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.model_dump_json(indent=2) if args.json else render(report, args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
