"""A recipe (with secrets in it) and eval reports shaped like the eval agent's, for publish, lint and upload tests."""

from __future__ import annotations

from fr_agent.core.recipe import ModelRef, PackagePin, Recipe, RecipeChange, ServePlan
from fr_agent.evals.report import EvalReport, MetricRow, SuiteOutcome

HF = "hf_abcdefghijklmnopqrstuvwxyz123456"
SK = "sk-abcdefghijklmnopqrstuvwxyz0123"
PASSWORD = "hunter2-not-token-shaped"


def make_recipe(entrypoint: str = "api_server", engine: str = "vllm") -> Recipe:
    return Recipe(
        model=ModelRef(name="Qwen2.5-0.5B-Instruct", repo_id="Qwen/Qwen2.5-0.5B-Instruct"),
        chip="cpu-x86",
        base_image="vendor/vllm-cpu:0.32.0",
        dtype="bfloat16",
        packages=[PackagePin(name="vllm", version="0.32.0"), PackagePin(name="transformers", version="5.19.0")],
        removed=["flash-attn", "xformers"],
        env={
            "HF_TOKEN": HF,
            "VLLM_CPU_KVCACHE_SPACE": "4",
            "OMP_NUM_THREADS": "8",
            "GREETING": "a b$c",
            "DB_PASSWORD": PASSWORD,
        },
        serve=ServePlan(
            engine=engine, entrypoint=entrypoint, engine_args={"max_model_len": 2048, "enforce_eager": True}
        ),
        changes=[
            RecipeChange(
                tool="set_env",
                args={"name": "VLLM_CPU_KVCACHE_SPACE", "value": "4"},
                summary="KV cache did not fit the default",
            ),
            RecipeChange(tool="set_env", args={"name": "DB_PASSWORD", "value": PASSWORD}, summary="database login"),
            RecipeChange(
                tool="set_engine_arg",
                args={"key": "max_model_len", "value": 2048, "note": SK},
                summary="shorter context to fit memory",
            ),
        ],
    )


def make_report(*, agreement: float = 0.97, throughput: float = 410.0) -> EvalReport:
    """Passing by default; a low `agreement` fails the accuracy gate, a low `throughput` the performance gate."""
    return EvalReport(
        metrics=[
            MetricRow(name="greedy_token_agreement", reference=1.0, migrated=agreement, samples=256),
            MetricRow(name="perplexity", reference=8.1, migrated=8.3, higher_is_better=False, samples=498),
            MetricRow(name="task_math_accuracy", suite="tasks", reference=0.25, migrated=0.25, samples=20),
            MetricRow(
                name="throughput_c1",
                kind="throughput",
                suite="serving",
                unit="tok/s",
                reference=300.0,
                migrated=throughput,
                samples=8,
            ),
            MetricRow(
                name="latency_p50_c1",
                kind="latency",
                suite="serving",
                unit="s",
                reference=0.11,
                migrated=0.08,
                higher_is_better=False,
                samples=8,
            ),
        ],
        outcomes=[SuiteOutcome(suite="lm-eval", status="skipped", reason="lm-evaluation-harness is not installed")],
        reference_backend="transformers float32 on host cpu",
        migrated_backend="vllm-cpu 0.32.0 bfloat16 in sandbox",
        samples=790,
        duration_s=21.5,
    )
