"""The eval agent: the migrated model against a reference run of the same weights, metric by metric.

Reference: the original weights served by fr-agent's transformers server (the hf engine's
`hf_server.py`) in float32 on this host, or any OpenAI-compatible server given as
`eval.reference_url` (for example the native engine on the same chip). Migrated: the engine the
sandbox serves. Both go through the same client, the same items and the same scoring. Each suite
runs on its own: a suite that raises is recorded as crashed (and fails the gate), a suite that
cannot run here (lm-eval not installed) as skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path

import httpx

from fr_agent.core.config import EvalSettings
from fr_agent.core.errors import require_extra
from fr_agent.core.ports import free_port
from fr_agent.core.secrets import child_env, open_private, write_private
from fr_agent.evals.consistency import consistency, prompts
from fr_agent.evals.endpoint import Endpoint
from fr_agent.evals.harness import Skip, lm_eval_rows
from fr_agent.evals.render import chart_png
from fr_agent.evals.report import EvalReport, MetricRow, SuiteOutcome
from fr_agent.evals.serving import serving
from fr_agent.evals.tasks import task_accuracy


def weight_bytes(model_path: str) -> int:
    return sum(
        f.stat().st_size for pattern in ("*.safetensors", "*.bin", "*.pt") for f in Path(model_path).glob(pattern)
    )


def reference_device(model_path: str, settings: EvalSettings) -> str:
    """cpu or cuda. auto: cuda when torch sees a device with room for the reference in its dtype (weights as
    stored are 16-bit or wider: float32 needs at most twice their size) plus a quarter for activations;
    a 7B model's float32 reference on a CPU takes hours, on the chip minutes."""
    if settings.reference_device != "auto":
        return settings.reference_device
    try:
        import torch  # heavy: the host extra; only the reference's device choice needs it

        if not torch.cuda.is_available():
            return "cpu"
        free, _ = torch.cuda.mem_get_info()
    except Exception:  # noqa: BLE001 - no usable CUDA: the CPU is the reference
        return "cpu"
    scale = 2 if settings.reference_dtype == "float32" else 1
    return "cuda" if weight_bytes(model_path) * scale * 1.25 < free else "cpu"


@contextmanager
def reference_server(model_path: str, settings: EvalSettings, log_path: Path, device: str = "cpu") -> Iterator[str]:
    """The reference endpoint's URL: the configured one, or a float32 transformers server started here."""
    if settings.reference_url:
        yield settings.reference_url
        return
    script = resources.files("fr_agent.sandboxes.probes").joinpath("hf_server.py")
    port = free_port()
    argv = [
        sys.executable,
        str(script),
        model_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        settings.reference_dtype,
        "--device",
        device,
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The host's own torch, loaded as this process loads it (a vendor stack's library and module paths), with
    # the user's thread counts; nothing else of the host's env goes, secrets least of all.
    env = child_env(passthrough=("LD_LIBRARY_PATH", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    with open_private(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + settings.reference_start_timeout_s
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"reference server exited with code {process.returncode}: {tail[0]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"reference server not healthy after {settings.reference_start_timeout_s:g}s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_suite(
    name: str, run: Callable[[], list[MetricRow]], rows: list[MetricRow], outcomes: list[SuiteOutcome]
) -> None:
    try:
        rows += run()
    except Skip as skip:
        outcomes.append(SuiteOutcome(suite=name, status="skipped", reason=str(skip)))
    except Exception as err:  # a crashed suite fails the gate; it is reported, not raised
        outcomes.append(SuiteOutcome(suite=name, status="crashed", reason=f"{type(err).__name__}: {err}"[:500]))


def write_artifacts(report: EvalReport, report_path: Path, chart_path: Path) -> None:
    """The report as JSON (read back by publish) and its chart."""
    write_private(report_path, report.model_dump_json(indent=2))
    chart_png(report.summary(), chart_path)


def evaluate(
    model_path: str, server_url: str, *, migrated_backend: str, settings: EvalSettings, log_dir: Path
) -> EvalReport:
    # the tokenizer always, the reference server when it is started here (hf_server.py, on this interpreter)
    require_extra("the eval", "transformers", *(() if settings.reference_url else ("torch",)))
    started = time.monotonic()
    rows: list[MetricRow] = []
    outcomes: list[SuiteOutcome] = []
    device = "cpu" if settings.reference_url else reference_device(model_path, settings)
    reference_backend = (
        f"OpenAI-compatible server at {settings.reference_url}"
        if settings.reference_url
        else f"transformers {settings.reference_dtype} on this host's {device.upper()} "
        "(fr-agent hf_server, native torch ops)"
    )

    def report() -> EvalReport:
        return EvalReport(
            metrics=rows,
            outcomes=outcomes,
            threshold_pct=settings.threshold_pct,
            min_perf_ratio=settings.min_perf_ratio,
            reference_backend=reference_backend,
            migrated_backend=migrated_backend,
            samples=sum(m.samples for m in rows),
            duration_s=round(time.monotonic() - started, 1),
        )

    with ExitStack() as stack:
        try:
            from transformers import AutoTokenizer  # heavy: the host extra (checked by require_extra above)

            migrated = Endpoint(server_url)  # first: a dead migrated server fails before a reference is started
            stack.callback(migrated.close)
            tokenizer = AutoTokenizer.from_pretrained(model_path)
            ref_url = stack.enter_context(
                reference_server(model_path, settings, log_dir / "reference-server.log", device)
            )
            reference = Endpoint(ref_url)
            stack.callback(reference.close)
        except Exception as err:  # without both endpoints no suite can run: the report says why
            outcomes.append(
                SuiteOutcome(suite="endpoints", status="crashed", reason=f"{type(err).__name__}: {err}"[:500])
            )
            return report()

        def encode(text: str) -> list[int]:
            return tokenizer(text).input_ids

        def encode_continuation(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False).input_ids

        run_suite(
            "consistency",
            lambda: consistency(
                reference,
                migrated,
                encode,
                greedy_tokens=settings.max_new_tokens,
                topk=settings.topk,
                topk_tokens=settings.topk_tokens,
                prompt_count=settings.prompts,
                heldout_tokens=settings.heldout_tokens,
            ),
            rows,
            outcomes,
        )
        run_suite(
            "tasks",
            lambda: task_accuracy(
                reference,
                migrated,
                encode,
                encode_continuation,
                per_category=settings.tasks_per_category,
                concurrency=settings.task_concurrency,
            ),
            rows,
            outcomes,
        )
        if settings.concurrency:
            run_suite(
                "serving",
                lambda: serving(
                    (reference.url, reference.model),
                    (migrated.url, migrated.model),
                    [encode(p) for p in prompts()],
                    levels=settings.concurrency,
                    requests=settings.perf_requests,
                    max_tokens=settings.perf_max_tokens,
                ),
                rows,
                outcomes,
            )
        else:
            outcomes.append(
                SuiteOutcome(
                    suite="serving", status="skipped", reason="no concurrency levels configured (eval.concurrency)"
                )
            )
        run_suite(
            "lm-eval",
            lambda: lm_eval_rows(
                (reference.url, reference.model),
                (migrated.url, migrated.model),
                model_path,
                settings.lm_eval_tasks,
                settings.lm_eval_limit,
            ),
            rows,
            outcomes,
        )
    return report()
