"""Transcript review: tool calls with recipe diffs (rollbacks respected), `transcripts diff`, and the HTML
page rendered in headless Chromium, checked by what it lays out and colours. The transcript here is
written line by line as the loop's typed events, with controlled timestamps; test_batch_e2e.py
renders pages of real runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fr_agent.core.events import CLASS_OF_KIND
from fr_agent.core.paths import RunFiles
from fr_agent.core.recipe import ModelRef, PackagePin, Recipe, ServePlan
from fr_agent.shell.review import diff_runs, render_run_html, run_events, tool_call_history
from tests.browser import render
from tests.cli_helpers import fr_agent, one_line_error
from tests.tiny_facts import TINY_LLAMA_FACTS

T0 = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)
BASE = Recipe(
    model=ModelRef(name="tiny-llama", repo_id="fr-agent/tiny-llama", path="/models/tiny"),
    chip="cpu",
    base_image="fr-agent/cpu-base:bookworm",
    packages=[PackagePin(name="torch", version="2.13.0"), PackagePin(name="transformers", version="5.19.0")],
    serve=ServePlan(engine="hf", engine_args={"max_model_len": 1024}),
)
STARTED = (0, "run_started", {"request": {"model": "tiny-llama", "chip": "cpu"}, "run_dir": "runs/x"})
METRICS_BAD = [
    {"name": "greedy_token_agreement", "reference": 1.0, "migrated": 0.8, "abs_diff": 0.2, "pct_diff": 20.0},
    {"name": "top1_agreement", "reference": 1.0, "migrated": 0.97, "abs_diff": 0.03, "pct_diff": 3.0},
]
METRICS_GOOD = [
    {"name": "greedy_token_agreement", "reference": 1.0, "migrated": 1.0, "abs_diff": 0.0, "pct_diff": 0.0},
    {"name": "top1_agreement", "reference": 1.0, "migrated": 0.995, "abs_diff": 0.005, "pct_diff": 0.5},
]


def write_run(runs: Path, run_id: str, events: list[tuple[float, str, dict]]) -> Path:
    """A run directory as the loop leaves it: request.json and a transcript (t = seconds after T0)."""
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    files = RunFiles(run_dir)
    files.request.write_text(
        json.dumps(
            {
                "model": "tiny-llama",
                "chip": "cpu",
                "planner": "playbook",
                "sandbox": "local",
                "with_flaggems": False,
                "engine": "hf",
                "catalog": None,
            }
        )
    )
    with files.transcript.open("w") as out:
        for t, kind, fields in events:
            event = CLASS_OF_KIND[kind](run_id=run_id, ts=T0 + timedelta(seconds=t), **fields)
            out.write(event.model_dump_json() + "\n")
    return run_dir


def stage(t: float, attempt: int, name: str, ok: bool, seconds: float, detail: str = "ok") -> tuple[float, str, dict]:
    return (
        t,
        "stage",
        {
            "attempt": attempt,
            "stage": name,
            "ok": ok,
            "detail": detail,
            "duration_s": seconds,
            "log_path": None,
            "timed_out": False,
        },
    )


def eval_event(t: float, attempt: int, passed: bool, reason: str, metrics: list[dict], dtype: str) -> tuple:
    """The eval of the migrated hf engine in `dtype` against the float32 reference, at a 5% threshold."""
    return (
        t,
        "eval",
        {
            "attempt": attempt,
            "gate_passed": passed,
            "gate_reason": reason,
            "threshold_pct": 5.0,
            "metrics": metrics,
            "reference_backend": "transformers float32",
            "migrated_backend": f"hf {dtype}",
            "samples": 8,
        },
    )


def repaired_run(runs: Path) -> Path:
    """Attempt 1: operators fail → patch_operator, verified. Attempt 2: all stages pass, eval gate fails →
    set_env_var not verified (rolled back) → fix_serve_config dtype float32, verified → gate passes."""
    diag_ops = {
        "attempt": 1,
        "stage": "operators",
        "category": "patch_operator",
        "playbook": "op-mismatch",
        "explanation": "rms_norm differs from its torch reference",
        "confidence": 0.9,
        "evidence": ["rms_norm: max abs diff 3.1 > 0.016 (bfloat16)"],
        "signature": "op:rms_norm",
        "tool_calls": [],
    }
    diag_eval = {
        "attempt": 2,
        "stage": "eval",
        "category": "fix_serve_config",
        "playbook": "eval-drift",
        "explanation": "bfloat16 drifts from the float32 reference",
        "confidence": 0.7,
        "evidence": ["greedy_token_agreement 0.80 vs 1.00 (20.0%)"],
        "signature": "eval:drift",
        "tool_calls": [],
    }
    ops = {"tool": "patch_operator", "args": {"op": "rms_norm", "strategy": "reference"}}
    env = {"tool": "set_env_var", "args": {"name": "ONEDNN_MAX_CPU_ISA", "value": "AVX512_CORE_BF16"}}
    dtype = {"tool": "fix_serve_config", "args": {"key": "dtype", "value": "float32"}}
    return write_run(
        runs,
        "run-repaired",
        [
            STARTED,
            (
                1,
                "analysis",
                {
                    "model": BASE.model.model_dump(),
                    "chip": "cpu",
                    "source": "fixture",
                    "facts": TINY_LLAMA_FACTS,
                    "notes": [],
                    "recipe": BASE.model_dump(),
                },
            ),
            (
                2,
                "precheck",
                {"ok": True, "checks": [{"name": "device", "ok": True, "detail": "cpu: 2 cores", "required": True}]},
            ),
            stage(8, 1, "install", True, 6),
            stage(15, 1, "import", True, 7),
            stage(17, 1, "device", True, 2),
            stage(27, 1, "load", True, 10),
            stage(30, 1, "operators", False, 3, "rms_norm: max abs diff 3.1"),
            (30.5, "diagnosis", dict(diag_ops)),
            (31, "plan", {"attempt": 1, "planner": "playbook", **ops, "explanation": "x", "evidence": []}),
            (31, "tool_call", {"attempt": 1, "status": "applied", **ops, "change": "reference rms_norm"}),
            (33, "verification", {"attempt": 1, **ops, "ok": True, "detail": "rms_norm matches its reference"}),
            stage(36, 2, "operators", True, 3),
            stage(42, 2, "serve", True, 6),
            stage(43, 2, "smoke", True, 1),
            eval_event(50, 2, False, "average percent difference 11.50% >= 5%", METRICS_BAD, "bfloat16"),
            (50.5, "diagnosis", dict(diag_eval)),
            (
                51,
                "tool_call",
                {"attempt": 2, "status": "applied", **env, "change": "set ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16"},
            ),
            (52, "verification", {"attempt": 2, **env, "ok": False, "detail": "variable not visible"}),
            (
                52.5,
                "tool_call",
                {
                    "attempt": 2,
                    "status": "rejected",
                    "tool": "patch_operator",
                    "args": {"op": "conv2d", "strategy": "disable"},
                    "error": "operator 'conv2d' is not checked",
                },
            ),
            (53, "tool_call", {"attempt": 2, "status": "applied", **dtype, "change": "dtype=float32"}),
            (55, "verification", {"attempt": 2, **dtype, "ok": True, "detail": "the hf engine accepts the serve args"}),
            (56, "note", {"message": "resumed", "passed_before": ["install"]}),
            stage(60, 3, "device", True, 2),
            stage(70, 3, "load", True, 10),
            stage(73, 3, "operators", True, 3),
            stage(79, 3, "serve", True, 6),
            stage(80, 3, "smoke", True, 1),
            eval_event(88, 3, True, "average percent difference 0.25% < 5%", METRICS_GOOD, "float32"),
            (
                89,
                "run_finished",
                {
                    "attempt": 3,
                    "status": "passed",
                    "reason": "migrated, evaluated, published",
                    "fixes": [],
                    "passed": [],
                },
            ),
        ],
    )


def test_tool_call_steps_diff_each_fix_against_the_recipe_it_changed(tmp_path):
    steps = tool_call_history(run_events(repaired_run(tmp_path)))
    assert [(s.tool, s.status, s.kept) for s in steps] == [
        ("patch_operator", "applied", True),
        ("set_env_var", "applied", False),
        ("patch_operator", "rejected", False),
        ("fix_serve_config", "applied", True),
    ]
    ops, env, _, dtype = steps
    assert [line for line in ops.diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        '-    "reference": []',
        '+    "reference": [',
        '+      "rms_norm"',
        "+    ]",
    ]
    assert any('"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"' in line for line in env.diff if line.startswith("+"))
    # The dtype fix is diffed against the rolled-back recipe: the env change it never saw is nowhere in it.
    changed = [line for line in dtype.diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ['-  "dtype": "bfloat16",', '+  "dtype": "float32",']


def test_transcripts_diff_sets_two_runs_side_by_side(tmp_path):
    a = repaired_run(tmp_path / "runs")
    b = write_run(
        tmp_path / "runs",
        "run-failed",
        [
            STARTED,
            stage(6, 1, "install", True, 6),
            stage(30, 1, "operators", False, 3, "rms_norm: max abs diff 3.1"),
            (
                40,
                "run_finished",
                {"attempt": 1, "status": "failed", "reason": "operators: no untried fix", "fixes": [], "passed": []},
            ),
        ],
    )
    (b / "request.json").write_text((a / "request.json").read_text().replace('"engine": "hf"', '"engine": "vllm"'))
    diff = diff_runs(a, b)
    assert diff["request"] == {"engine": ["hf", "vllm"]}
    assert diff["status"] == ["passed", "failed"] and diff["attempts"] == [3, 1]
    ops = next(s for s in diff["stages"] if s["stage"] == "operators")
    assert ops["a"] == "a1:FAIL a2:ok a3:ok" and ops["b"] == "a1:FAIL"
    assert diff["fixes"]["only_a"] == [
        'patch_operator({"op": "rms_norm", "strategy": "reference"})',
        'fix_serve_config({"key": "dtype", "value": "float32"})',
    ]
    assert diff["gate_passed"] == [True, None] and diff["seconds"] == [89.0, 40.0]
    cli = fr_agent("transcripts", "diff", "run-repaired", "run-failed", home=tmp_path, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "request.engine" in cli.stdout and "a1:FAIL a2:ok a3:ok" in cli.stdout
    assert 'only in A: patch_operator({"op": "rms_norm", "strategy": "reference"})' in cli.stdout


def test_review_page_renders_in_chromium_with_timeline_diagnoses_diffs_and_eval(tmp_path):
    run_dir = repaired_run(tmp_path / "runs")
    page = tmp_path / "review.html"
    page.write_text(render_run_html(run_dir))
    shown = render(page, tmp_path)
    assert shown["scripts"] == 0 and shown["external"] == []  # self-contained: no script, nothing fetched
    assert shown["h1"] == ["tiny-llama on cpu passed"]
    # Timeline: 13 stage bars laid out left to right within the page, failures red, passes green.
    stages = shown["stages"]
    assert len(stages) == 13 and all(s["shown"] for s in stages)
    assert [s["stage"] for s in stages if not s["ok"]] == ["operators"]
    assert {s["fill"] for s in stages if s["ok"]} == {"rgb(46, 125, 50)"}
    assert {s["fill"] for s in stages if not s["ok"]} == {"rgb(198, 40, 40)"}
    xs = [s["box"][0] for s in stages]
    assert xs == sorted(xs) and max(s["box"][0] + s["box"][2] for s in stages) <= 1280
    rows = sorted({round(s["box"][1]) for s in stages})
    assert len(rows) == 3  # one row per attempt
    assert shown["diagnosis_marks"] == 2 and shown["fix_marks"] == 3
    # Each diagnosis with its evidence; each tool call with the recipe lines it changed.
    assert [d["title"] for d in shown["diagnoses"]] == [
        "attempt 1: operators → patch_operator (op-mismatch)",
        "attempt 2: eval → fix_serve_config (eval-drift)",
    ]
    assert shown["diagnoses"][0]["evidence"] == "rms_norm: max abs diff 3.1 > 0.016 (bfloat16)"
    calls = shown["tool_calls"]
    assert [c["title"].split("(")[0] for c in calls] == [
        "attempt 1: patch_operator",
        "attempt 2: set_env_var",
        "attempt 2: patch_operator",
        "attempt 2: fix_serve_config",
    ]
    assert "verified" in calls[0]["title"] and "rolled back" in calls[1]["title"] and "rejected" in calls[2]["title"]
    assert calls[3]["removed"] == ['-  "dtype": "bfloat16",'] and calls[3]["added"] == ['+  "dtype": "float32",']
    assert calls[0]["added_bg"] == "rgb(218, 251, 225)"
    # Eval: the table of the final round, and one bar per metric per round under a dashed gate line.
    assert shown["eval_rows"] == [
        ["metric", "reference", "migrated", "abs diff", "% diff"],
        ["greedy_token_agreement", "1.0000", "1.0000", "0.0000", "0.00"],
        ["top1_agreement", "1.0000", "0.9950", "0.0050", "0.50"],
    ]
    bars = shown["bars"]
    assert [b["metric"] for b in bars] == [
        "greedy_token_agreement",
        "greedy_token_agreement",
        "top1_agreement",
        "top1_agreement",
    ]
    heights = [b["box"][3] for b in bars]
    assert heights[0] > heights[2] > heights[3] and heights[1] == 1  # 20% > 3% > 0.5% > 0%
    gate_y = shown["threshold"][0][1]
    assert bars[0]["box"][1] < gate_y < bars[2]["box"][1]  # 20% pokes above the 5% line, 3% stays under


def test_replay_reads_the_kept_fixes_from_the_published_recipe_or_else_the_transcript(tmp_path, monkeypatch):
    from fr_agent.agents.repair import with_secrets_from_env
    from fr_agent.core.config import Settings
    from fr_agent.core.errors import FrAgentError
    from fr_agent.core.recipe import RecipeChange
    from fr_agent.shell.replay import recorded_fixes
    from fr_agent.shell.runs import Run, read_request

    run_dir = repaired_run(tmp_path)
    source = Run(run_dir, read_request(run_dir), Settings())
    fixes, origin = recorded_fixes(source)
    assert origin == "transcript (verified tool calls)"
    assert [(f.tool, f.args) for f in fixes] == [
        ("patch_operator", {"op": "rms_norm", "strategy": "reference"}),
        ("fix_serve_config", {"key": "dtype", "value": "float32"}),
    ]
    published = BASE.with_change(
        RecipeChange(tool="set_env_var", args={"name": "HF_TOKEN", "value": "<redacted>"}, summary="set HF_TOKEN"),
        env={"HF_TOKEN": "<redacted>"},
    )
    (run_dir / "publish").mkdir()
    (run_dir / "publish" / "recipe.json").write_text(published.model_dump_json())
    fixes, origin = recorded_fixes(source)
    assert origin == "publish/recipe.json" and [f.tool for f in fixes] == ["set_env_var"]
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(FrAgentError, match="export HF_TOKEN to replay it"):
        with_secrets_from_env(fixes[0])
    monkeypatch.setenv("HF_TOKEN", "hf_from_this_environment_0000000000")
    assert with_secrets_from_env(fixes[0]).args == {"name": "HF_TOKEN", "value": "hf_from_this_environment_0000000000"}


def test_show_html_and_replay_through_the_cli(tmp_path):
    repaired_run(tmp_path / "runs")
    write_run(tmp_path / "runs", "run-stopped-early", [STARTED])
    out = tmp_path / "pages" / "run.html"
    shown = fr_agent("transcripts", "show", "run-repaired", "--html", str(out), home=tmp_path, timeout=120)
    assert shown.returncode == 0 and f"review page: {out}" in shown.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="run-repaired"' in page and "<script" not in page
    replay = fr_agent("transcripts", "replay", "run-stopped-early", home=tmp_path, timeout=120)
    assert replay.returncode == 2
    assert "run run-stopped-early never got past analysis: there is no recipe to replay" in one_line_error(replay)


def test_a_foreign_transcript_is_a_one_line_error(tmp_path):
    run_dir = write_run(tmp_path / "runs", "run-foreign", [STARTED])
    with (run_dir / "transcript.jsonl").open("a") as out:
        out.write('{"level": "info", "msg": "a line some other tool wrote"}\n')
    shown = fr_agent("transcripts", "show", "run-foreign", "--json", home=tmp_path, timeout=120)
    assert shown.returncode == 2 and shown.stdout == ""
    assert "transcript.jsonl: line 2 is not a transcript event" in one_line_error(shown)


def test_show_json_folds_the_typed_events(tmp_path):
    repaired_run(tmp_path / "runs")
    shown = fr_agent("transcripts", "show", "run-repaired", "--json", home=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert (summary["started"], summary["finished"]) == ((T0).isoformat(), (T0 + timedelta(seconds=89)).isoformat())
    assert summary["eval"]["gate_passed"] and summary["eval"]["metrics"][1]["migrated"] == 0.995
    assert [f["tool"] for f in summary["fixes"]] == ["patch_operator", "fix_serve_config"]
