"""Reviewing runs afterwards, by people who weren't watching: the fixes with the recipe diff each made,
two runs side by side, and one self-contained HTML page per run (or per batch).

Everything here is read from transcripts. Recipe diffs are recomputed by re-applying each recorded tool
call with the tool's own pure `apply` to the analysed recipe, so a reviewer sees exactly what changed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import (
    AnalysisEvent,
    DiagnosisEvent,
    EvalEvent,
    Event,
    NoteEvent,
    PrecheckEvent,
    StageEvent,
    ToolCallEvent,
    VerificationEvent,
    last,
    of_kind,
    read_events,
)
from fr_agent.core.paths import RunFiles
from fr_agent.core.recipe import STAGES, Recipe
from fr_agent.shell.runs import summarize
from fr_agent.tools import ToolCall, validate_call


def run_events(run_dir: Path) -> list[Event]:
    path = RunFiles(run_dir).transcript
    return read_events(path) if path.exists() else []


def _recipe_text(recipe: Recipe) -> list[str]:
    data = recipe.model_dump()
    data.pop("changes")  # the change log itself is listed beside the diff
    return json.dumps(data, indent=2, sort_keys=True).splitlines()


@dataclass
class ToolCallStep:
    """One tool call as a reviewer sees it: applied (with its recipe diff and whether its check passed),
    rejected, declined or replayed. `kept`: applied, verified, and so still in the recipe."""

    attempt: int
    tool: str
    args: dict[str, Any]
    status: str
    change: str  # applied or replayed: the recipe change; rejected: why
    diff: list[str] = field(default_factory=list)
    verified: bool | None = None
    detail: str = ""
    kept: bool = False


def tool_call_history(events: list[Event]) -> list[ToolCallStep]:
    """Each tool call in order, applied ones diffed against the recipe they changed (after rollbacks)."""
    steps: list[ToolCallStep] = []
    recipe_before: dict[int, Recipe | None] = {}  # per applied step: the recipe its rollback returns to
    current: Recipe | None = None
    for event in events:
        if isinstance(event, AnalysisEvent):
            try:
                current = Recipe.model_validate(event.recipe)
            except ValidationError:
                current = None
        elif isinstance(event, ToolCallEvent) and event.status == "applied":
            step = ToolCallStep(
                attempt=event.attempt, tool=event.tool, args=event.args, status="applied", change=event.change or ""
            )
            recipe_before[len(steps)] = current
            if current is not None:
                try:
                    tool, args = validate_call(ToolCall(tool=event.tool, args=event.args))
                    after = tool.apply(current, args)
                    step.diff = list(
                        difflib.unified_diff(
                            _recipe_text(current),
                            _recipe_text(after),
                            "recipe before",
                            "recipe after",
                            n=2,
                            lineterm="",
                        )
                    )
                    current = after
                except (FrAgentError, ValidationError, ValueError) as err:  # a tool that changed since the run
                    step.diff = [f"(diff unavailable: {err})"]
            steps.append(step)
        elif isinstance(event, ToolCallEvent):
            steps.append(
                ToolCallStep(
                    attempt=event.attempt,
                    tool=event.tool,
                    args=event.args,
                    status=event.status,
                    change=event.error or "",
                )
            )
        elif isinstance(event, VerificationEvent):
            index = next(
                (
                    i
                    for i in reversed(range(len(steps)))
                    if steps[i].status == "applied"
                    and steps[i].tool == event.tool
                    and steps[i].args == event.args
                    and steps[i].verified is None
                ),
                None,
            )
            if index is None:
                continue
            step = steps[index]
            step.verified, step.detail, step.kept = event.ok, event.detail, event.ok
            if not event.ok:  # rolled back by the loop
                current = recipe_before[index]
    return steps


def stage_runs(events: list[Event]) -> dict[str, list[tuple[int, bool, float]]]:
    """Per stage, each run of it: (attempt, ok, seconds)."""
    runs: dict[str, list[tuple[int, bool, float]]] = {}
    for e in of_kind(events, StageEvent):
        runs.setdefault(e.stage, []).append((e.attempt, e.ok, e.duration_s))
    return runs


def _run_seconds(events: list[Event]) -> float | None:
    stamps = [e.ts for e in events]
    return round((max(stamps) - min(stamps)).total_seconds(), 1) if stamps else None


def diff_runs(a: Path, b: Path) -> dict:
    """Two runs side by side: request, outcome, stages, fixes, eval metrics, time."""
    sa, sb = summarize(a), summarize(b)
    ea, eb = run_events(a), run_events(b)
    ra, rb = (json.loads(RunFiles(run).request.read_text()) for run in (a, b))
    request = {k: [ra.get(k), rb.get(k)] for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)}

    def stage_line(runs: list[tuple[int, bool, float]]) -> str:
        return " ".join(f"a{att}:{'ok' if ok else 'FAIL'}" for att, ok, _ in runs) or "-"

    runs_a, runs_b = stage_runs(ea), stage_runs(eb)
    stages = [
        {
            "stage": s,
            "a": stage_line(runs_a.get(s, [])),
            "b": stage_line(runs_b.get(s, [])),
            "seconds": [round(sum(r[2] for r in runs_a.get(s, [])), 1), round(sum(r[2] for r in runs_b.get(s, [])), 1)],
        }
        for s in STAGES
    ]

    def key(fix: dict) -> str:
        return f"{fix['tool']}({json.dumps(fix['args'], sort_keys=True)})"

    fa, fb = [key(f) for f in sa["fixes"]], [key(f) for f in sb["fixes"]]
    metrics_a = {m["name"]: m for m in (sa["eval"] or {}).get("metrics", [])}
    metrics_b = {m["name"]: m for m in (sb["eval"] or {}).get("metrics", [])}
    evals = []
    for name in list(dict.fromkeys([*metrics_a, *metrics_b])):
        va = metrics_a.get(name, {}).get("migrated")
        vb = metrics_b.get(name, {}).get("migrated")
        evals.append(
            {"metric": name, "a": va, "b": vb, "delta": None if va is None or vb is None else round(vb - va, 6)}
        )
    return {
        "a": sa["run_id"],
        "b": sb["run_id"],
        "request": request,
        "status": [sa["status"], sb["status"]],
        "reason": [sa["reason"], sb["reason"]],
        "attempts": [sa["attempts"], sb["attempts"]],
        "stages": stages,
        "fixes": {
            "both": [f for f in fa if f in fb],
            "only_a": [f for f in fa if f not in fb],
            "only_b": [f for f in fb if f not in fa],
        },
        "gate_passed": [(sa["eval"] or {}).get("gate_passed"), (sb["eval"] or {}).get("gate_passed")],
        "eval": evals,
        "seconds": [_run_seconds(ea), _run_seconds(eb)],
    }


# ---------------------------------------------------------------------------------------------- HTML

OK_COLOR, FAIL_COLOR, FIX_COLOR, DIAG_COLOR = "#2e7d32", "#c62828", "#1565c0", "#ef6c00"
ROUND_COLORS = ("#8e24aa", "#1565c0", "#00838f", "#6d4c41")

CSS = f"""
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1100px;
       color: #1d1d1f; padding: 0 16px; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} h2 {{ font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
h3 {{ font-size: 15px; margin: 14px 0 4px; }}
table {{ border-collapse: collapse; margin: 8px 0; }} th, td {{ border: 1px solid #ddd; padding: 3px 8px;
       text-align: left; vertical-align: top; }} th {{ background: #f4f4f6; }}
.badge {{ display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; }}
.passed {{ background: {OK_COLOR}; }} .failed, .precheck_failed, .eval_failed, .error, .crashed, .timeout, .no_host,
.unfinished {{ background: {FAIL_COLOR}; }} .pending, .retrying {{ background: #757575; }}
.ok {{ color: {OK_COLOR}; font-weight: 600; }} .fail {{ color: {FAIL_COLOR}; font-weight: 600; }}
pre {{ background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; margin: 4px 0; white-space: pre-wrap; }}
pre.diff .add {{ color: #116329; background: #dafbe1; display: block; }}
pre.diff .del {{ color: #82071e; background: #ffebe9; display: block; }}
pre.diff .hunk {{ color: #57606a; display: block; }} pre.diff .ctx {{ display: block; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }}
.muted {{ color: #6e6e73; }} dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; }}
"""


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _badge(status: str) -> str:
    return f'<span class="badge {escape(status)}">{escape(status)}</span>'


def timeline_svg(events: list[Event]) -> str:
    """Stages as bars on one row per attempt (x: seconds since the run started), diagnoses and fixes as marks."""
    stages = of_kind(events, StageEvent)
    if not stages:
        return '<p class="muted">no stage ran.</p>'
    t0 = min(e.ts for e in events)
    spans = [((e.ts - t0).total_seconds() - e.duration_s, (e.ts - t0).total_seconds(), e) for e in stages]
    total = max(max(end for _, end, _ in spans), max((e.ts - t0).total_seconds() for e in events), 1.0)
    attempts = sorted({e.attempt for e in stages})
    left, width, row = 90, 900, 34
    height = 30 + row * len(attempts) + 24
    x = lambda t: left + width * max(0.0, t) / total  # noqa: E731
    y = {a: 24 + row * i for i, a in enumerate(attempts)}
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
        f'role="img" aria-label="timeline of stages per attempt">'
    ]
    for a in attempts:
        parts.append(f'<text x="4" y="{y[a] + 18}" font-size="12">attempt {a}</text>')
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y[a] + 26}" y2="{y[a] + 26}" stroke="#eee"/>')
    for start, end, e in spans:
        color = OK_COLOR if e.ok else FAIL_COLOR
        x0, w = x(start), max(3.0, x(end) - x(start))
        label = f"{e.stage} {'ok' if e.ok else 'FAILED'} in {e.duration_s:.1f}s: {e.detail}"
        parts.append(
            f'<rect class="stage {"ok" if e.ok else "fail"}" data-stage="{escape(e.stage)}" '
            f'x="{x0:.1f}" y="{y[e.attempt] + 4}" width="{w:.1f}" height="20" fill="{color}" rx="2">'
            f"<title>{escape(label[:400])}</title></rect>"
        )
        if w > 8 * len(e.stage):
            parts.append(
                f'<text x="{x0 + 3:.1f}" y="{y[e.attempt] + 18}" font-size="11" fill="#fff">{escape(e.stage)}</text>'
            )
    for e in events:
        at = x((e.ts - t0).total_seconds())
        row_y = y.get(e.attempt, y[attempts[-1]])
        if isinstance(e, EvalEvent) and e.duration_s:  # the eval agent's own span, after the stages
            x0 = x((e.ts - t0).total_seconds() - e.duration_s)
            parts.append(
                f'<rect class="eval-bar" x="{x0:.1f}" y="{row_y + 4}" width="{max(3.0, at - x0):.1f}" height="20" '
                f'fill="{OK_COLOR if e.gate_passed else FAIL_COLOR}" fill-opacity="0.55" rx="2">'
                f"<title>eval {e.duration_s:.1f}s: {escape(str(e.gate_reason or e.error)[:300])}"
                f'</title></rect><text x="{x0 + 3:.1f}" y="{row_y + 18}" font-size="11">eval</text>'
            )
        elif isinstance(e, DiagnosisEvent):
            parts.append(
                f'<path class="mark diagnosis" d="M{at:.1f},{row_y + 2} l5,9 l-10,0 z" fill="{DIAG_COLOR}">'
                f"<title>diagnosis: {escape(e.category)}: {escape(e.explanation[:300])}</title></path>"
            )
        elif isinstance(e, VerificationEvent):
            parts.append(
                f'<circle class="mark fix" cx="{at:.1f}" cy="{row_y + 28}" r="4" fill="{FIX_COLOR}">'
                f"<title>fix {escape(e.tool)} {'verified' if e.ok else 'not verified'}</title></circle>"
            )
        elif isinstance(e, NoteEvent) and e.message == "resumed":
            parts.append(
                f'<line class="mark resumed" x1="{at:.1f}" x2="{at:.1f}" y1="16" y2="{height - 20}" '
                f'stroke="#555" stroke-dasharray="4 3"><title>resumed after a stop</title></line>'
            )
    for i in range(6):
        t = total * i / 5
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 4}" font-size="10" fill="#6e6e73" text-anchor="middle">{t:.0f}s</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def eval_chart_svg(rounds: list[EvalEvent]) -> str:
    """Percent difference per metric, one bar per eval round, and the gate's threshold as a dashed line."""
    rounds = [r for r in rounds if r.metrics]
    if not rounds:
        return ""
    names = list(dict.fromkeys(m.name for r in rounds for m in r.metrics))
    threshold = rounds[-1].threshold_pct or 5.0
    values = [m.pct_diff for r in rounds for m in r.metrics if m.pct_diff is not None]
    top = max([threshold * 1.5, *values]) or 1.0
    step = 96
    left, plot_w, plot_h, base = 130, step * len(names), 200, 230
    bar_w = max(8.0, (step - 16) / len(rounds))
    parts = [
        f'<svg class="eval-chart" xmlns="http://www.w3.org/2000/svg" '
        f'width="{left + plot_w + 180}" height="{base + 130}" role="img" aria-label="percent difference per metric">',
        f'<line x1="{left}" x2="{left}" y1="{base - plot_h}" y2="{base}" stroke="#999"/>',
        f'<line x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}" stroke="#999"/>',
    ]
    scale = lambda v: plot_h * min(v, top) / top  # noqa: E731
    for i, name in enumerate(names):
        for j, r in enumerate(rounds):
            m = next((m for m in r.metrics if m.name == name), None)
            if m is None:
                continue
            pct = m.pct_diff
            h = plot_h if pct is None else scale(pct)
            x0 = left + step * i + 8 + j * bar_w
            label = "non-finite" if pct is None else f"{pct:.2f}%"
            parts.append(
                f'<rect class="bar" data-metric="{escape(name)}" x="{x0:.1f}" y="{base - h:.1f}" '
                f'width="{bar_w - 2:.1f}" height="{max(h, 1):.1f}" fill="{ROUND_COLORS[j % len(ROUND_COLORS)]}">'
                f"<title>{escape(name)} round {j + 1}: {label}</title></rect>"
            )
            parts.append(
                f'<text x="{x0 + (bar_w - 2) / 2:.1f}" y="{base - h - 3:.1f}" font-size="10" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
        cx = left + step * i + step / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{base + 14}" font-size="11" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {base + 14})">{escape(name)}</text>'
        )
    ty = base - scale(threshold)
    parts.append(
        f'<line class="threshold" x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{FAIL_COLOR}" '
        f'stroke-dasharray="6 4"/><text x="{left + plot_w + 4}" y="{ty + 4:.1f}" font-size="11" fill="{FAIL_COLOR}">'
        f"gate {threshold:g}%</text>"
    )
    for j, r in enumerate(rounds):
        verdict = "passed" if r.gate_passed else "failed"
        parts.append(
            f'<rect x="{left + plot_w + 4}" y="{base - plot_h + 18 * j}" width="10" height="10" '
            f'fill="{ROUND_COLORS[j % len(ROUND_COLORS)]}"/>'
            f'<text x="{left + plot_w + 18}" y="{base - plot_h + 18 * j + 9}" '
            f'font-size="11">eval {j + 1} (attempt {r.attempt}): {verdict}</text>'
        )
    parts.append(f'<text x="{left - 40}" y="{base - plot_h - 6}" font-size="11">% diff</text></svg>')
    return "".join(parts)


def _diff_html(lines: list[str]) -> str:
    out = []
    for line in lines:
        cls = (
            "add"
            if line.startswith("+") and not line.startswith("+++")
            else "del"
            if line.startswith("-") and not line.startswith("---")
            else "hunk"
            if line.startswith("@@")
            else "ctx"
        )
        out.append(f'<span class="{cls}">{escape(line) or " "}</span>')
    return '<pre class="diff">' + "".join(out) + "</pre>"


def run_section(run_dir: Path, anchor: str = "") -> str:
    """The body of a run's review: header, timeline, attempts, diagnoses, tool calls, eval, publish."""
    summary = summarize(run_dir)
    events = run_events(run_dir)
    request = json.loads(RunFiles(run_dir).request.read_text())
    h = [
        f'<section class="run" id="{escape(anchor or summary["run_id"])}">',
        f"<h1>{escape(summary['model'])} on {escape(summary['chip'])} {_badge(summary['status'])}</h1>",
        f'<p class="muted">run {escape(summary["run_id"])}</p>',
        '<dl class="facts">',
        f'<dt>outcome</dt><dd class="reason">{escape(summary["reason"])}</dd>',
        f"<dt>attempts</dt><dd>{summary['attempts']}</dd>",
        f"<dt>fixes verified</dt><dd>{len(summary['fixes'])}</dd>",
        f"<dt>eval gate</dt><dd>{_gate(summary)}</dd>",
        f"<dt>wall time</dt><dd>{_fmt(_run_seconds(events), 1)} s</dd>",
        f"<dt>request</dt><dd><code>{escape(json.dumps(request))}</code></dd>",
        "</dl>",
    ]
    precheck = last(events, PrecheckEvent)
    if precheck:
        h.append("<h2>Precheck</h2><table><tr><th>check</th><th>ok</th><th>detail</th></tr>")
        for c in precheck.checks:
            h.append(
                f'<tr><td>{escape(c.name)}</td><td class="{"ok" if c.ok else "fail"}">{"ok" if c.ok else "FAIL"}'
                f"</td><td>{escape(c.detail)}</td></tr>"
            )
        h.append("</table>")
    h.append("<h2>Timeline</h2>" + timeline_svg(events))
    h.append(
        '<p class="muted">bars: stages (green passed, red failed; hover for detail), shaded: the eval; '
        "triangles: diagnoses; dots: fixes checked; dashed line: resumed after a stop.</p>"
    )
    stages = of_kind(events, StageEvent)
    if stages:
        h.append(
            '<h2>Stages and attempts</h2><table class="stages"><tr><th>attempt</th><th>stage</th><th>result</th>'
            "<th>seconds</th><th>detail</th></tr>"
        )
        for e in stages:
            h.append(
                f'<tr><td>{e.attempt}</td><td>{escape(e.stage)}</td><td class="{"ok" if e.ok else "fail"}">'
                f"{'passed' if e.ok else 'FAILED'}</td><td>{_fmt(e.duration_s, 1)}</td>"
                f"<td>{escape(e.detail[:500])}</td></tr>"
            )
        h.append("</table>")
    diagnoses = of_kind(events, DiagnosisEvent)
    if diagnoses:
        h.append("<h2>Diagnoses</h2>")
        for d in diagnoses:
            h.append(
                f'<div class="card diagnosis"><h3>attempt {d.attempt}: {escape(d.stage)} → '
                f"{escape(d.category)}{' (' + escape(d.playbook) + ')' if d.playbook else ''}</h3>"
                f'<p>{escape(d.explanation)} <span class="muted">confidence {_fmt(d.confidence, 2)}'
                f'</span></p><div class="muted">evidence</div><pre class="evidence">'
                f"{escape(chr(10).join(d.evidence))}</pre></div>"
            )
    steps = tool_call_history(events)
    if steps:
        h.append("<h2>Tool calls</h2>")
        for s in steps:
            if s.status == "applied":
                check = (
                    "<span class=ok>verified</span>"
                    if s.verified
                    else "<span class=fail>not verified: rolled back</span>"
                    if s.verified is False
                    else '<span class="muted">not checked (run stopped)</span>'
                )
                h.append(
                    f'<div class="card tool-call"><h3>attempt {s.attempt}: {escape(s.tool)}'
                    f"(<code>{escape(json.dumps(s.args))}</code>) {check}</h3><p>{escape(s.change)}</p>"
                    f'<p class="muted">{escape(s.detail)}</p>{_diff_html(s.diff)}</div>'
                )
            else:
                h.append(
                    f'<div class="card tool-call"><h3>attempt {s.attempt}: {escape(s.tool)}'
                    f"(<code>{escape(json.dumps(s.args))}</code>) <span class=fail>{escape(s.status)}</span></h3>"
                    f"<p>{escape(s.change)}</p></div>"
                )
    rounds = of_kind(events, EvalEvent)
    if rounds:
        h.append("<h2>Eval: reference vs migrated</h2>")
        final = rounds[-1]
        if final.metrics:
            h.append(
                f'<p class="muted">reference: {escape(str(final.reference_backend))}; migrated: '
                f"{escape(str(final.migrated_backend))}; samples {final.samples}</p>"
            )
            h.append(
                '<table class="eval"><tr><th>metric</th><th>reference</th><th>migrated</th><th>abs diff</th>'
                "<th>% diff</th></tr>"
            )
            for m in final.metrics:
                h.append(
                    f"<tr><td>{escape(m.name)}</td><td>{_fmt(m.reference)}</td><td>{_fmt(m.migrated)}</td>"
                    f"<td>{_fmt(m.abs_diff)}</td><td>{_fmt(m.pct_diff, 2) if m.pct_diff is not None else 'nan'}"
                    "</td></tr>"
                )
            h.append("</table>")
        h.append(f"<p>gate: {_gate(summary)}</p>")
        h.append(eval_chart_svg(rounds))
    if summary["publish_dir"]:
        files = (
            sorted(p.name for p in Path(summary["publish_dir"]).iterdir())
            if Path(summary["publish_dir"]).is_dir()
            else []
        )
        h.append(f"<h2>Publish</h2><p><code>{escape(summary['publish_dir'])}</code>: {escape(', '.join(files))}</p>")
    h.append("</section>")
    return "\n".join(h)


def _gate(summary: dict) -> str:
    ev = summary.get("eval") or {}
    if ev.get("gate_passed") is None:
        return '<span class="muted">not reached</span>'
    verdict = '<span class="ok">passed</span>' if ev["gate_passed"] else '<span class="fail">FAILED</span>'
    return f'{verdict} <span class="muted">{escape(str(ev.get("gate_reason") or ev.get("error") or ""))}</span>'


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


def render_run_html(run_dir: Path) -> str:
    return page(f"fr-agent review: {run_dir.name}", run_section(run_dir))


def render_batch_html(rows: list[dict], runs_dir: Path, title: str) -> str:
    """A batch on one page: the summary table, then each job's latest run reviewed in full."""
    body = [
        f"<h1>batch {escape(title)}</h1>",
        '<table class="batch"><tr><th>job</th><th>status</th><th>tries</th>'
        "<th>attempts</th><th>fixes</th><th>gate</th><th>seconds</th><th>reason</th></tr>",
    ]
    for r in rows:
        gate = "–" if r["gate_passed"] is None else ("pass" if r["gate_passed"] else "FAIL")
        link = f'<a href="#{escape(r["run_id"])}">{escape(r["job"])}</a>' if r["run_id"] else escape(r["job"])
        body.append(
            f"<tr><td>{link}</td><td>{_badge(r['status'])}</td><td>{r['tries']}</td><td>{r['attempts']}</td>"
            f"<td>{r['fixes']}</td><td>{gate}</td><td>{r['seconds']:.1f}</td><td>{escape(r['reason'][:160])}</td></tr>"
        )
    body.append("</table>")
    for r in rows:
        run_dir = runs_dir / r["run_id"] if r["run_id"] else None
        if run_dir and RunFiles(run_dir).request.exists():
            body.append("<hr>" + run_section(run_dir))
    return page(f"fr-agent batch {title}", "\n".join(body))
