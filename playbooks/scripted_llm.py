"""The scripted LLM: the LLM planner's twin for tests and offline demos, behind a real HTTP server that
speaks the OpenAI chat-completions API (`fr-agent llm serve-scripted SCRIPT`).

A script (YAML or JSON) gives replies in order, a function of the request (`respond: file.py:function` or
`module:function`), or both (the function answers once the replies are used up). `quirks` make the server
behave like endpoints seen in the wild: refusing `strict` or `tool_choice` or tools altogether, DeepSeek's
400 when a tool-calling turn comes back without its `reasoning_content`, no usage numbers, vLLM's small
context window (`max_model_len` in `/v1/models`, its 400s in its own words), a tokenizer denser than four
characters a token; a reply can be junk (`body`: any text, `truncated`: fewer bytes than promised). Every exchange
can be recorded as JSON lines and replayed later (`replies: [{raw: ...}]`, see `replay_script`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from fr_agent.core.errors import FrAgentError
from fr_agent.core.types import Strict, first_error
from fr_agent.playbooks.llm_client import calls_in_text


class ScriptedCall(Strict):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict, description="a string is sent as is (bad JSON too)")


class ScriptedReply(Strict):
    content: str | None = None
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    think: str | None = Field(None, description="written as <think>…</think> before the content")
    reasoning_content: str | None = Field(None, description="DeepSeek-style thinking field")
    as_text: bool = Field(False, description="tool calls written into the content as JSON (no tool parser)")
    status: int | None = Field(None, description="answer with this HTTP error status instead")
    error: str = "scripted error"
    retry_after_ms: int | None = None
    delay_s: float = 0.0
    raw: dict | None = Field(None, description="a whole response (or error) body, returned verbatim (replays)")
    body: str | None = Field(None, description="junk: this text is the whole body, as `content_type`")
    content_type: str = "text/html"
    truncated: bool = Field(False, description="the connection closes before the promised Content-Length")
    finish_reason: str | None = Field(None, description="instead of stop / tool_calls (e.g. length)")


class Quirks(Strict):
    reject_strict: bool = False
    reject_tool_choice: bool = False
    reject_tools: bool = False
    reject_max_tokens: bool = Field(False, description="newer OpenAI models: only max_completion_tokens")
    require_reasoning_content: bool = Field(False, description="DeepSeek: tool-calling turns need it sent back")
    tool_calls_as_text: bool = False
    omit_usage: bool = False
    max_model_len: int | None = Field(None, description="vLLM: reported by /v1/models and enforced with its 400s")
    chars_per_token: float = Field(4.0, gt=0, description="how the usage numbers count tokens")
    models_body: str | None = Field(None, description="junk: /v1/models answers this text")


class Script(Strict):
    model: str = "scripted-llm"
    quirks: Quirks = Field(default_factory=Quirks)
    replies: list[ScriptedReply] = Field(default_factory=list)
    respond: str | None = Field(None, description="file.py:function or module:function taking the request body")


Responder = Callable[[dict], dict | ScriptedReply]


@dataclass(frozen=True)
class RawBody:
    """A body sent as is: junk an endpoint may answer."""

    text: str
    content_type: str
    truncated: bool = False


def load_script(path: Path) -> Script:
    try:
        data = yaml.safe_load(Path(path).read_text())
        script = Script.model_validate(data if isinstance(data, dict) else {"replies": data or []})
    except (OSError, yaml.YAMLError) as err:
        raise FrAgentError(f"cannot read LLM script {path}: {str(err).splitlines()[0]}") from None
    except ValidationError as err:
        raise FrAgentError(f"invalid LLM script {path}: {first_error(err)}") from None
    if script.respond and ":" not in script.respond:
        raise FrAgentError(f"invalid LLM script {path}: respond must be FILE.py:FUNCTION or MODULE:FUNCTION")
    return script


def load_responder(spec: str, base: Path | None = None) -> Responder:
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target) if Path(target).is_absolute() or base is None else base / target
        module_spec = importlib.util.spec_from_file_location(f"fr_agent_script_{abs(hash(str(path)))}", path)
        if module_spec is None or not path.is_file():
            raise FrAgentError(f"LLM script function file {path} does not exist")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    function = getattr(module, name, None)
    if not callable(function):
        raise FrAgentError(f"{spec}: no function {name!r}")
    return function


def replay_script(recording: Path, model: str = "scripted-llm") -> Script:
    """A script that answers with the responses of a recorded conversation (`--record`), in order."""
    replies = []
    try:
        for line in Path(recording).read_text().splitlines():
            exchange = json.loads(line)
            status = exchange.get("status", 200)
            response = exchange["response"]
            junk = {"body": response} if isinstance(response, str) else {"raw": response}
            replies.append(ScriptedReply(status=None if status == 200 else status, **junk))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise FrAgentError(f"cannot replay {recording}: not a recording of exchanges ({type(err).__name__})") from None
    return Script(model=model, replies=replies)


class ScriptedLLM:
    """Answers chat-completion request bodies from a script; thread-safe; keeps every exchange."""

    def __init__(self, script: Script, *, base: Path | None = None, record: Path | None = None):
        self.script = script
        self.responder = load_responder(script.respond, base) if script.respond else None
        self.record = record
        self.exchanges: list[dict] = []
        self.used = 0
        self._lock = threading.Lock()

    @property
    def requests(self) -> list[dict]:
        return [e["request"] for e in self.exchanges]

    def answer(self, request: dict) -> tuple[int, dict | RawBody, dict[str, str]]:
        with self._lock:
            refusal = self._refusal(request)
            if refusal:
                status, body, headers, delay = 400, error_body(refusal, "invalid_request_error"), {}, 0.0
            else:
                status, body, headers, delay = self._scripted(request)
            response = body.text if isinstance(body, RawBody) else body
            exchange = {"request": request, "status": status, "response": response}
            self.exchanges.append(exchange)
            if self.record:
                with self.record.open("a") as handle:
                    handle.write(json.dumps(exchange) + "\n")
        if delay:
            time.sleep(delay)
        return status, body, headers

    def tokens(self, value: Any) -> int:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return max(1, int(len(text) / self.script.quirks.chars_per_token))

    def _refusal(self, request: dict) -> str | None:
        quirks = self.script.quirks
        tools = request.get("tools") or []
        window = quirks.max_model_len
        asked = request.get("max_tokens", request.get("max_completion_tokens"))
        if window is not None and asked is not None:  # vLLM's own words, both checks
            prompt = self.tokens(request.get("messages", [])) + self.tokens(tools)
            if asked > window:
                return (
                    f"max_tokens={asked} cannot be greater than max_model_len={window}. "
                    "Please request fewer output tokens."
                )
            if prompt + asked > window:
                return (
                    f"This model's maximum context length is {window} tokens. However, you requested "
                    f"{prompt + asked} tokens ({prompt} in the messages, {asked} in the completion). "
                    "Please reduce the length of the messages or completion."
                )
        if quirks.reject_tools and tools:
            return "This model does not support tools."
        if quirks.reject_strict and any(t.get("function", {}).get("strict") for t in tools):
            return "Unrecognized request argument supplied: strict"
        if quirks.reject_tool_choice and "tool_choice" in request:
            return '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
        if quirks.reject_max_tokens and "max_tokens" in request:
            return (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            )
        if quirks.require_reasoning_content:
            for message in request.get("messages", []):
                if (
                    message.get("role") == "assistant"
                    and message.get("tool_calls")
                    and not message.get("reasoning_content")
                ):
                    return "The reasoning_content in the thinking mode must be passed back to the API."
        return None

    def _scripted(self, request: dict) -> tuple[int, dict, dict[str, str], float]:
        if self.used < len(self.script.replies):
            reply = self.script.replies[self.used]
            self.used += 1
        elif self.responder is not None:
            produced = self.responder(request)
            reply = produced if isinstance(produced, ScriptedReply) else ScriptedReply.model_validate(produced)
        else:
            return 500, error_body("the script has no more replies", "server_error"), {}, 0.0
        headers = {"retry-after-ms": str(reply.retry_after_ms)} if reply.retry_after_ms is not None else {}
        if reply.body is not None or reply.truncated:
            text = reply.body if reply.body is not None else json.dumps(self._completion(request, reply))
            return reply.status or 200, RawBody(text, reply.content_type, reply.truncated), headers, reply.delay_s
        if reply.status:
            return reply.status, reply.raw or error_body(reply.error, "scripted_error"), headers, reply.delay_s
        if reply.raw is not None:
            return 200, reply.raw, headers, reply.delay_s
        return 200, self._completion(request, reply), headers, reply.delay_s

    def _completion(self, request: dict, reply: ScriptedReply) -> dict:
        n = len(self.exchanges)
        calls = [
            {
                "id": f"call_{n}_{i}",
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                },
            }
            for i, c in enumerate(reply.tool_calls)
        ]
        content = reply.content or ""
        as_text = reply.as_text or self.script.quirks.tool_calls_as_text or not request.get("tools")
        if calls and as_text:
            written = [
                {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])} for c in calls
            ]
            content = (content + "\n" if content else "") + json.dumps(written[0] if len(written) == 1 else written)
            calls = []
        if reply.think:
            content = f"<think>{reply.think}</think>\n{content}"
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        if reply.reasoning_content is not None:
            message["reasoning_content"] = reply.reasoning_content
        body = {
            "id": f"chatcmpl-scripted-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.script.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": reply.finish_reason or ("tool_calls" if calls else "stop"),
                }
            ],
        }
        if not self.script.quirks.omit_usage:
            prompt = self.tokens(request.get("messages", [])) + self.tokens(request.get("tools", []))
            asked = request.get("max_tokens", request.get("max_completion_tokens"))
            completion = min(self.tokens(json.dumps(message)), asked or 1 << 30)
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return body


def error_body(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class JsonHandler(BaseHTTPRequestHandler):
    """Answers in JSON and logs nothing: the scripted LLM's server, and the tests' other stand-in servers."""

    def log_message(self, *args) -> None:  # quiet: the exchanges are the record
        pass

    def send_json(self, status: int, body: dict | list, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_raw(self, status: int, body: RawBody, headers: dict[str, str] | None = None) -> None:
        data = body.text.encode()
        self.send_response(status)
        self.send_header("Content-Type", body.content_type)
        self.send_header("Content-Length", str(len(data) * 2 if body.truncated else len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if body.truncated else data)
        self.close_connection = True


class _Handler(JsonHandler):
    llm: ScriptedLLM  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            self.send_json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            quirks = self.llm.script.quirks
            if quirks.models_body is not None:
                self.send_raw(200, RawBody(quirks.models_body, "text/html"))
                return
            model = {"id": self.llm.script.model, "object": "model", "created": 0, "owned_by": "fr-agent"}
            if quirks.max_model_len is not None:
                model["max_model_len"] = quirks.max_model_len
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self.send_json(404, error_body(f"no route {path}", "not_found"))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self.send_json(404, error_body(f"no route {path}", "not_found"))
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError as err:
            self.send_json(400, error_body(f"body is not JSON: {err}", "invalid_request_error"))
            return
        try:
            status, body, headers = self.llm.answer(request)
        except Exception as err:  # a broken script function: the client sees a 500, the server keeps going
            status, body, headers = (
                500,
                error_body(f"script function failed: {type(err).__name__}: {err}", "server_error"),
                {},
            )
        if isinstance(body, RawBody):
            self.send_raw(status, body, headers)
        else:
            self.send_json(status, body, headers)


class ScriptedServer:
    def __init__(self, llm: ScriptedLLM, host: str = "127.0.0.1", port: int = 0):
        handler = type("ScriptedHandler", (_Handler,), {"llm": llm})
        self.llm = llm
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serving(
    script: Script, *, base: Path | None = None, record: Path | None = None, port: int = 0
) -> Iterator[ScriptedServer]:
    server = ScriptedServer(ScriptedLLM(script, base=base, record=record), port=port).start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------
# A demo model: follows the playbook candidates the planner lists in its round context.

CANDIDATE = re.compile(r"^- (\{.*\}) \((untried|tried)\)$", re.M)


def user_context(request: dict) -> str:
    """The round context: the first user message of the conversation."""
    return next((m.get("content") or "" for m in request.get("messages", []) if m.get("role") == "user"), "")


def proposed_before(request: dict) -> list[tuple[str, dict]]:
    """Calls the model already made in this conversation: a round still talking has refused them all."""
    calls = []
    for message in request.get("messages", []):
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or []:
            calls.append((call["function"]["name"], json.loads(call["function"]["arguments"] or "{}")))
        calls += [(c.name, c.arguments) for c in calls_in_text(message.get("content") or "")]
    return calls


def follow_candidates(request: dict) -> dict:
    """Propose the first untried playbook candidate not already refused in this conversation; answer the
    user's messages in one line. Deterministic, so whole runs can be replayed offline."""
    context = user_context(request)
    refused = proposed_before(request)
    if "`echo`" in context:  # the capability probe (`fr-agent llm check`, `--planner auto`)
        return {"content": "done"} if refused else {"tool_calls": [{"name": "echo", "arguments": {"word": "pong"}}]}
    reply = "Noted your message. " if "## Messages from the user" in context else ""
    for raw, state in CANDIDATE.findall(context):
        candidate = json.loads(raw)
        if state == "untried" and (candidate["tool"], candidate["args"]) not in refused:
            return {
                "content": reply + f"Following the playbook candidate: {candidate['tool']}.",
                "tool_calls": [{"name": candidate["tool"], "arguments": candidate["args"]}],
            }
    return {"content": reply + "No playbook candidate fits and I have no other fix to propose."}
