"""The LLM planner: one conversation per planning round with any OpenAI-compatible endpoint.

The round's context is bounded: the Diagnosis, a log excerpt (evidence, head, tail), the recipe and its
changes so far, the fixes already tried with their outcome (from the loop's state), the playbook
candidates as hints, and what the user typed since the last round. The model may call read-only tools
first; every repair call it makes is checked exactly as the loop will check it (validation, the package
index, already tried). A refused or missing call is fed back, up to `max_invalid_replies` times; then,
or when the endpoint fails or the round's tokens are spent, the round follows the playbooks. When the
run's tokens are spent the run pauses, resumable. The run's count of tokens is the loop's: the round
brings it and takes back what the round spent. Each request is an `llm_call` transcript event (tokens,
cost, latency) and a line of `llm-conversation.jsonl` in the run directory; neither is read back.
"""

from __future__ import annotations

import json
from pathlib import Path

from fr_agent.core.config import LLMSettings, Settings
from fr_agent.core.errors import AlreadyTried, FrAgentError, RunPaused, ToolRejected
from fr_agent.core.secrets import redact_text, redact_value
from fr_agent.playbooks.diagnose import ANSI, read_bounded
from fr_agent.playbooks.llm_client import (
    MIN_COMPLETION_TOKENS,
    Endpoint,
    LLMClient,
    LLMError,
    LLMReply,
    ParsedCall,
    Refused,
    probe,
    resolve_endpoint,
    strip_calls,
)
from fr_agent.playbooks.llm_tools import ALL_SPECS, INVESTIGATIONS, investigate
from fr_agent.playbooks.planning import Planner, PlanRound, PlaybookPlanner, call_label
from fr_agent.tools import TOOLS
from fr_agent.tools.base import ToolCall


def spoken(names: list[str], last: str) -> str:
    """`a, b and c`: tool names in a sentence."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else "".join(names)


# The tool names come from the tables, so the prompt names every tool the planner may call.
SYSTEM_PROMPT = f"""You are the repair planner of fr-agent, which migrates a language model onto an AI chip.
A stage of the staged attempt (install, import, device, load, operators, serve, smoke, or the eval gate) failed.
Propose the single most likely fix as ONE call of a repair tool: {spoken(list(TOOLS), "or")}.
The harness validates your call, may ask the user, applies it, checks it and re-runs the stage; you never run
commands yourself.
Before deciding you may call the read-only tools {spoken(list(INVESTIGATIONS), "and")}.
Never repeat a fix listed as tried. Package names must exist on PyPI. The playbook candidates are known
fixes for known failure signatures: prefer them when they fit, but they are hints, not orders.
If the user wrote to you, answer in one or two sentences in your reply text and take it into account."""

NUDGE = f"Call exactly one repair tool now ({', '.join(TOOLS)}), with arguments that match its schema."


class FallBack(Exception):
    """This round follows the playbooks; the message says why."""


# ---------------------------------------------------------------------------------------------------
# Context


def log_excerpt(path: Path, evidence: list[str], limit_chars: int) -> str:
    """Evidence lines with a few lines around them first, then the tail, then the head, as many as fit;
    numbered as in the file, gaps marked."""
    lines = [ANSI.sub("", line).rstrip()[:300] for line in read_bounded(path).splitlines()]
    if not lines:
        return "(empty log)"
    wanted: list[int] = []
    for needle in (e[:120] for e in evidence if e.strip()):
        for index, line in enumerate(lines):
            if needle in line:
                wanted += range(max(0, index - 4), min(len(lines), index + 5))
    wanted += range(len(lines) - 1, max(-1, len(lines) - 41), -1)
    wanted += range(min(10, len(lines)))
    chosen: set[int] = set()
    used = 0
    for index in wanted:
        if index in chosen:
            continue
        cost = len(lines[index]) + 8
        if used + cost > limit_chars:
            break
        chosen.add(index)
        used += cost
    out, previous = [], -1
    for index in sorted(chosen):
        if index != previous + 1:
            out.append("…")
        out.append(f"{index + 1}: {lines[index]}")
        previous = index
    if previous != len(lines) - 1:
        out.append("…")
    return "\n".join(out)


def round_context(round: PlanRound, excerpt_chars: int) -> str:
    d = round.diagnosis
    diagnosis = [
        f"category: {d.category}" + (f" (playbook {d.playbook})" if d.playbook else ""),
        f"explanation: {d.explanation}",
        f"confidence: {d.confidence}",
        *(f"evidence: {line}" for line in d.evidence),
    ]
    if d.params:
        diagnosis.append(f"params: {json.dumps(d.params, sort_keys=True, default=str)}")
    if getattr(d, "facts", None):
        diagnosis.append(f"facts from the log: {json.dumps(d.facts, sort_keys=True, default=str)}")
    parts = [
        f"## Failure\nstage {d.stage} failed in attempt {round.attempt}: {round.failure.get('detail', '')}",
        "## Diagnosis\n" + "\n".join(diagnosis),
    ]
    log_path = round.failure.get("log_path")
    if log_path and excerpt_chars > 0 and Path(log_path).is_file():
        parts.append(
            f"## Log excerpt ({Path(log_path).name}; read_log reads more)\n"
            + log_excerpt(Path(log_path), d.evidence, excerpt_chars)
        )
    if round.recipe is not None:
        r = round.recipe
        recipe = [
            f"chip {r.chip}, torch device {r.torch_device}, dtype {r.dtype}",
            "packages: " + ", ".join(p.requirement() for p in r.packages),
            "removed: " + (", ".join(r.removed) or "none"),
            "env: " + (", ".join(f"{k}={v}" for k, v in sorted(r.env.items())) or "none"),
            f"serve: {r.serve.engine} via {r.serve.entrypoint}, "
            f"engine args {json.dumps(r.serve.engine_args, sort_keys=True)}",
            f"operators: {r.operators.backend} backend; disabled {r.operators.disabled}; "
            f"reference {r.operators.reference}; cast {r.operators.cast}",
        ]
        parts.append("## Recipe\n" + "\n".join(recipe))
        changes = "\n".join(f"- {c.summary} ({c.tool})" for c in r.changes)
        parts.append("## Recipe changes so far\n" + (changes or "none"))
    history = [outcome.line() for outcome in round.outcomes[-20:]]
    parts.append("## Fixes tried in this run, with their outcome\n" + ("\n".join(history) or "none yet"))
    candidates = [
        f"- {json.dumps({'tool': c.tool, 'args': c.args}, sort_keys=True)} "
        f"({'tried' if c.key() in round.tried else 'untried'})"
        for c in d.tool_calls
    ]
    parts.append(
        "## Playbook candidates (hints, not orders)\n"
        + ("\n".join(candidates) or "none: no playbook signature matches this failure")
    )
    if round.hints:
        parts.append(
            "## Messages from the user (answer briefly in your reply text; take them into account)\n"
            + "\n".join(f"- {h.text}" for h in round.hints)
        )
    parts.append("## Your move\n" + NUDGE + " Or call read-only tools first if you need to look.")
    return redact_text("\n\n".join(parts))


# ---------------------------------------------------------------------------------------------------
# Budget


class Budget:
    """Tokens per round and per run. The run's count is the loop's (`round.llm_tokens`, from its state) plus
    what this round spent (`round.tokens_spent`, which the loop adds to its state), so it survives a resume."""

    def __init__(self, settings: LLMSettings, round: PlanRound, run_id: str):
        self.settings, self.round, self.run_id = settings, round, run_id
        self.round_used = 0

    @property
    def run_used(self) -> int:
        return self.round.llm_tokens + self.round.tokens_spent

    def allowance(self, prompt_estimate: int) -> int:
        """Completion tokens the next request may ask for; the run pauses or the round falls back when
        not even a short answer fits."""
        limits = self.settings.budget
        run_left = limits.run_tokens - self.run_used - prompt_estimate
        if run_left < MIN_COMPLETION_TOKENS:
            raise RunPaused(
                f"LLM token budget spent: {self.run_used} of {limits.run_tokens} tokens used by run "
                f"{self.run_id}; raise llm.budget.run_tokens in a settings file and "
                f"`fr-agent resume {self.run_id} --config FILE`"
            )
        round_left = limits.round_tokens - self.round_used - prompt_estimate
        if round_left < MIN_COMPLETION_TOKENS:
            raise FallBack(f"the round's token budget is spent ({self.round_used} of {limits.round_tokens})")
        return min(self.settings.max_completion_tokens, run_left, round_left)

    def spend(self, tokens: int) -> None:
        self.round.tokens_spent += tokens
        self.round_used += tokens


# ---------------------------------------------------------------------------------------------------
# The planner


class LLMPlanner:
    name = "llm"

    def __init__(
        self, endpoint: Endpoint, settings: Settings, run_dir: Path | None = None, client: LLMClient | None = None
    ):
        self.endpoint, self.settings, self.run_dir = endpoint, settings, run_dir
        self.llm = settings.llm
        self.client = client or LLMClient(endpoint, self.llm)
        self.start_events = [("note", {"message": "planner llm", "reason": f"{endpoint.model} at {endpoint.where}"})]

    def propose(self, round: PlanRound) -> list[ToolCall]:
        budget = Budget(self.llm, round, self.run_dir.name if self.run_dir else "this run")
        if not self.client.models_read:  # once: the context window, where the server reports one
            self.client.read_models()
        try:
            calls = Conversation(self, round, budget).run()
        except FallBack as why:
            round.emit(
                "note",
                attempt=round.attempt,
                message="this round follows the playbooks",
                reason=str(why),
                planner="llm",
            )
            if round.hints:
                round.reply(f"The LLM planner could not finish this round ({why}); it follows the playbooks.")
            round.source = "playbook (llm fallback)"
            return PlaybookPlanner().propose(PlanRound(diagnosis=round.diagnosis, tried=round.tried))
        round.source = "llm"
        return calls

    def record(self, round: PlanRound, budget: Budget, turn: int, request: dict, reply: LLMReply) -> None:
        """One request on record: an `llm_call` event, and the exchange in llm-conversation.jsonl (redacted)."""
        usage = reply.usage
        cost = (
            usage.prompt_tokens * self.llm.price_input_per_mtok
            + usage.completion_tokens * self.llm.price_output_per_mtok
        ) / 1e6
        round.emit(
            "llm_call",
            **self.call_fields(round, budget, turn),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total,
            usage_estimated=usage.estimated,
            cost_usd=round_cost(cost),
            latency_s=reply.latency_s,
            finish_reason=reply.finish_reason,
            calls=[c.name for c in reply.calls],
            native_calls=reply.native,
            think_tags=reply.think_tags,
            reasoning_chars=len(reply.reasoning_content or reply.thinking or ""),
        )
        self.converse({"attempt": round.attempt, "turn": turn, "request": request, "reply": reply.model_dump()})

    def call_fields(self, round: PlanRound, budget: Budget, turn: int) -> dict:
        """What every llm_call event of a planning request says, answered or refused."""
        return {
            "attempt": round.attempt,
            "purpose": "plan",
            "model": self.endpoint.model,
            "endpoint": self.endpoint.where,
            "turn": turn,
            "round_tokens": budget.round_used,
            "run_tokens": budget.run_used,
            "dropped_features": len(self.client.caps.dropped),
        }

    def record_refused(self, round: PlanRound, budget: Budget, turn: int, refused: Refused) -> None:
        """A request the endpoint refused or could not answer: on record like any other, with its error."""
        round.emit("llm_call", **self.call_fields(round, budget, turn), error=refused.error)
        self.converse({"attempt": round.attempt, "turn": turn, "request": refused.request, "error": refused.error})

    def converse(self, line: dict) -> None:
        if self.run_dir is not None:
            with (self.run_dir / "llm-conversation.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(redact_value("conversation", line), default=str) + "\n")


def round_cost(cost: float) -> float:
    return float(f"{cost:.6g}")


class Conversation:
    """One round: ask, answer investigations, feed refusals back, until a repair call is accepted."""

    def __init__(self, planner: LLMPlanner, round: PlanRound, budget: Budget):
        self.planner, self.round, self.budget = planner, round, budget
        self.messages = self.fitted_messages()
        self.investigations = 0
        self.refused: list[str] = []

    def fitted_messages(self) -> list[dict]:
        """The round's opening messages; where the endpoint's context window is known, the log excerpt is
        trimmed (to nothing if need be) so the prompt leaves room for an answer."""
        client, llm = self.planner.client, self.planner.llm
        chars = llm.log_excerpt_chars
        while True:
            context = round_context(self.round, chars)
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": context}]
            window = client.context_window
            if window is None:
                return messages
            answer = min(llm.max_completion_tokens, max(MIN_COMPLETION_TOKENS, window // 4))
            over = client.prompt_estimate(messages, ALL_SPECS) + answer - window
            if over <= 0 or chars == 0:
                break
            chars = max(0, chars - int(over * client.chars_per_token) - 1)
            chars = chars if chars >= 200 else 0  # a few lines or none
        if chars < llm.log_excerpt_chars:
            self.round.emit(
                "note",
                attempt=self.round.attempt,
                message="log excerpt trimmed to fit the endpoint's context window",
                reason=f"{chars} of {llm.log_excerpt_chars} characters; a window of {window} tokens",
                planner="llm",
            )
        return messages

    def run(self) -> list[ToolCall]:
        planner, invalid = self.planner, 0
        for turn in range(1, 100):
            max_tokens = self.budget.allowance(planner.client.prompt_estimate(self.messages, ALL_SPECS))
            try:
                reply = planner.client.chat(self.messages, ALL_SPECS, max_tokens)
            except LLMError as err:
                for refused in planner.client.refused:
                    planner.record_refused(self.round, self.budget, turn, refused)
                raise FallBack(str(err)) from None
            for refused in planner.client.refused:
                planner.record_refused(self.round, self.budget, turn, refused)
            self.budget.spend(reply.usage.total)
            planner.record(self.round, self.budget, turn, planner.client.last_request, reply)
            self.messages.append(reply.assistant_message)
            words = strip_calls(reply.content) if not reply.native else reply.content
            if words:
                self.round.reply(words[:2000])
            accepted, answers, needs_retry = self.answer(reply.calls)
            if accepted:
                return accepted
            if needs_retry:
                invalid += 1
                if invalid > planner.llm.max_invalid_replies:
                    raise FallBack(
                        f"{invalid} replies without an acceptable repair call; the last: "
                        f"{answers[-1][1] if answers else 'no tool call'}"
                    )
            self.feed_back(reply, answers)
        raise FallBack("the conversation did not converge")

    def answer(self, calls: list[ParsedCall]) -> tuple[list[ToolCall], list[tuple[ParsedCall, str]], bool]:
        """(accepted repair calls, an answer for every call, whether this reply counts as invalid)."""
        accepted, answers = [], []
        needs_retry = not calls
        for call in calls:
            if call.arguments is None:
                answers.append((call, f"refused: {call.error}"))
                needs_retry = True
            elif call.name in INVESTIGATIONS:
                self.investigations += 1
                if self.investigations > self.planner.llm.max_investigations:
                    answers.append((call, "no more read-only calls in this round. " + NUDGE))
                    needs_retry = True
                else:
                    answers.append((call, investigate(self.round, call.name, call.arguments)))
            elif call.name in TOOLS:
                checked, refusal = self.check(call)
                if checked is not None:
                    accepted.append(checked)
                    answers.append((call, "accepted"))
                else:
                    answers.append((call, refusal))
                    needs_retry = True
            else:
                answers.append(
                    (
                        call,
                        f"refused: unknown tool {call.name!r}; repair tools: {', '.join(TOOLS)}; "
                        f"read-only tools: {', '.join(INVESTIGATIONS)}",
                    )
                )
                needs_retry = True
        return accepted, answers, needs_retry

    def check(self, call: ParsedCall) -> tuple[ToolCall | None, str]:
        """The call as the loop will take it, or the refusal fed back to the model."""
        proposal = ToolCall.model_construct(tool=call.name, args=call.arguments)
        label = call_label(call.name, call.arguments)
        if label in self.refused:  # the same refused call again: the model is looping
            raise FallBack(f"the model repeats a refused call: {label}")
        try:
            return (self.round.check(proposal) if self.round.check else proposal), ""
        except AlreadyTried as err:
            self.refused.append(label)
            outcome = next((o.line() for o in self.round.outcomes if o.label == err.label), None)
            return None, f"refused: {err}" + (
                f"; its outcome: {outcome.removeprefix('- ')}" if outcome else ""
            ) + "; propose a different fix"
        except ToolRejected as err:
            self.refused.append(label)
            self.round.emit(
                "tool_call",
                attempt=self.round.attempt,
                status="rejected",
                tool=call.name,
                args=call.arguments,
                error=str(err),
                planner="llm",
            )
            return None, f"refused: {err}"

    def feed_back(self, reply: LLMReply, answers: list[tuple[ParsedCall, str]]) -> None:
        if reply.native and answers:
            for call, text in answers:
                self.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text})
            if all(text == "accepted" or call.name in INVESTIGATIONS for call, text in answers):
                return
            self.messages.append({"role": "user", "content": NUDGE})
            return
        lines = [f"[{call.name}] {text}" for call, text in answers]
        lines.append(
            NUDGE
            if not answers or any(c.name not in INVESTIGATIONS for c, _ in answers)
            else "Continue: call a repair tool when you are ready."
        )
        self.messages.append({"role": "user", "content": "\n".join(lines)})


# ---------------------------------------------------------------------------------------------------
# Choosing a planner


NO_ENDPOINT = (
    "no LLM endpoint configured: set FR_AGENT_LLM_BASE_URL and FR_AGENT_LLM_MODEL (and FR_AGENT_LLM_API_KEY "
    "if it needs one), or llm.base_url and llm.model in a --config file"
)


def llm_planner(settings: Settings, run_dir: Path | None) -> LLMPlanner:
    endpoint = resolve_endpoint(settings.llm)
    if endpoint is None:
        raise FrAgentError(f"--planner llm: {NO_ENDPOINT}; `fr-agent llm check` tests one")
    return LLMPlanner(endpoint, settings, run_dir)


class AutoPlanner:
    """`--planner auto`: the LLM planner when an endpoint is configured and answers the capability probe
    (asked once, when the run starts or resumes), else the playbook planner. The choice and its reason are
    announced in the transcript; the probe's tokens are added to the next round's spend, so the loop
    counts them with the planner's."""

    def __init__(self, settings: Settings, run_dir: Path | None):
        self.chosen, self.reason, probe_event = self.choose(settings, run_dir)
        self.name = self.chosen.name
        self.probe_tokens = probe_event["total_tokens"] if probe_event else 0
        self.start_events = [
            *([("llm_call", probe_event)] if probe_event else []),
            ("note", {"message": f"planner auto chose {self.name}", "reason": self.reason}),
        ]

    @staticmethod
    def choose(settings: Settings, run_dir: Path | None) -> tuple[Planner, str, dict | None]:
        endpoint = resolve_endpoint(settings.llm)
        if endpoint is None:
            return PlaybookPlanner(), NO_ENDPOINT, None
        report, client = probe(endpoint, settings.llm, max_retries=0, timeout_s=min(30.0, settings.llm.timeout_s))
        event = {
            "purpose": "probe",
            "model": endpoint.model,
            "endpoint": endpoint.where,
            "total_tokens": report.tokens,
            "latency_s": report.latency_s,
            "error": report.error,
        }
        if not report.usable:
            why = report.error or "its replies carry no tool call the planner can read"
            return PlaybookPlanner(), f"{endpoint.where} failed the capability probe: {why}", event
        planner = LLMPlanner(endpoint, settings, run_dir)
        learned = ("caps", "context_window", "models_read", "chars_per_token")
        for name in learned:  # the probe's client had its own retries and timeout; what it learned carries over
            setattr(planner.client, name, getattr(client, name))
        return planner, f"{endpoint.model} at {endpoint.where} answers the capability probe", event

    def propose(self, round: PlanRound) -> list[ToolCall]:
        round.tokens_spent += self.probe_tokens  # before the round asks: the run's budget counts the probe
        self.probe_tokens = 0
        return self.chosen.propose(round)
