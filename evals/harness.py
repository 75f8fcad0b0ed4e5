"""Larger suites through lm-evaluation-harness, run against the same two endpoints (its
`local-completions` model), when the harness is installed and the tasks' data is already in the
local datasets cache. Anything short of that is a clean skip with its reason, never a crash.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from contextlib import contextmanager

from fr_agent.evals.report import MetricRow

# What datasets raise when a task's data is not in the local cache and the hub may not be reached.
MISSING_DATA_ERRORS = (
    "DatasetNotFoundError",
    "OfflineModeIsEnabled",
    "ConnectionError",
    "FileNotFoundError",
    "LocalEntryNotFoundError",
)


class Skip(Exception):
    """The suite cannot run here; the message says why."""


def unavailable(tasks: list[str]) -> str | None:
    """Why the harness suite will not run, or None when it can be tried."""
    if not tasks:
        return "no tasks configured (eval.lm_eval_tasks)"
    if importlib.util.find_spec("lm_eval") is None:
        return "lm-evaluation-harness is not installed (pip install lm-eval)"
    return None


@contextmanager
def offline_datasets():
    """Data must come from the local cache: the harness must not download anything during a run."""
    saved = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_side(url: str, model: str, tokenizer: str, tasks: list[str], limit: int | None) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from one endpoint."""
    lm_eval = importlib.import_module("lm_eval")
    model_args = {
        "base_url": f"{url.rstrip('/')}/v1/completions",
        "model": model,
        "tokenizer": tokenizer,
        "tokenizer_backend": "huggingface",
        "tokenized_requests": True,
        "num_concurrent": 1,
        "max_retries": 1,
    }
    with offline_datasets():
        try:
            out = lm_eval.simple_evaluate(model="local-completions", model_args=model_args, tasks=tasks, limit=limit)
        except Exception as err:
            if type(err).__name__ in MISSING_DATA_ERRORS:
                raise Skip(f"task data is not in the local cache ({type(err).__name__}: {str(err)[:200]})") from err
            raise
    results = {}
    for task, values in out["results"].items():
        results[task] = {
            name.split(",")[0]: float(value)
            for name, value in values.items()
            if isinstance(value, (int, float)) and "stderr" not in name
        }
    return results


def lm_eval_rows(
    reference: tuple[str, str], migrated: tuple[str, str], tokenizer: str, tasks: list[str], limit: int | None
) -> list[MetricRow]:
    """`reference` and `migrated` are (url, served model name); raises Skip when the suite cannot run."""
    reason = unavailable(tasks)
    if reason:
        raise Skip(reason)
    ref = run_side(*reference, tokenizer, tasks, limit)
    mig = run_side(*migrated, tokenizer, tasks, limit)
    rows = []
    for task in sorted(ref):
        for metric in sorted(ref[task]):
            rows.append(
                MetricRow(
                    name=f"lm_eval_{task}_{metric}",
                    suite="lm-eval",
                    reference=ref[task][metric],
                    migrated=mig.get(task, {}).get(metric, float("nan")),
                    samples=limit or 0,
                )
            )
    return rows
