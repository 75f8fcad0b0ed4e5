"""One chat request to an OpenAI-compatible endpoint through the `openai` SDK, with the quirks of real
servers absorbed here and nowhere else:

- `<think>…</think>` in content (reasoning models behind vLLM/ollama) is split off the answer;
- `reasoning_content` (DeepSeek's thinking mode) is sent back on every assistant turn that called tools,
  which DeepSeek's API requires (it answers 400 otherwise);
- tool calls written as text in content (JSON, ```json fences, Hermes/Qwen `<tool_call>` tags) are parsed;
- a 400 that names a feature (`strict`, `tool_choice`, `tools`, `max_tokens`) drops that feature and the
  same request is sent again; without native tools the schemas go into the prompt as text;
- the context window: `max_model_len` from `/v1/models` (vLLM) when it is there, else learned from a 400 that
  names a token limit (`max_tokens=2048 cannot be greater than max_model_len=1024`), after which
  `max_tokens` is lowered and the request sent once more; `max_tokens` never asks past the window;
- a reply that is not a chat completion (not JSON, an HTML page, the wrong shape, no choices) is an
  `LLMError`, like any other failure of the endpoint;
- 429, 5xx, timeouts and connection errors are retried by the SDK (`max_retries`), then end as one
  clear line (`LLMError`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, SecretStr, ValidationError

from fr_agent.core.config import LLMSettings
from fr_agent.core.errors import FrAgentError
from fr_agent.core.types import first_error

OPENAI_BASE_URL = "https://api.openai.com/v1"
MIN_COMPLETION_TOKENS = 16
# Before a server has reported usage, a conservative guess; afterwards its own prompt_tokens calibrate it.
FIRST_CHARS_PER_TOKEN = 3.5
ESTIMATE_MARGIN = 1.1
# vLLM and OpenAI name the context window, and sometimes the prompt's tokens, in a 400.
WINDOW_IN_ERROR = re.compile(r"max_model_len\s*=?\s*(\d+)|maximum context length is (\d+)", re.I)
PROMPT_IN_ERROR = re.compile(r"(\d+) in the messages|has (\d+) input tokens|messages resulted in (\d+) tokens", re.I)


class LLMError(FrAgentError):
    """The endpoint could not give an answer (after the SDK's retries); the message is one line."""


class Endpoint(BaseModel):
    base_url: str
    model: str
    api_key: SecretStr | None = None

    @property
    def where(self) -> str:
        """The URL without credentials or query, for messages and transcripts."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))


def resolve_endpoint(llm: LLMSettings, env: Mapping[str, str] = os.environ) -> Endpoint | None:
    """The configured endpoint, or None. FR_AGENT_LLM_* env wins over the settings file; OPENAI_BASE_URL
    and OPENAI_API_KEY are the last resort. A model name is required; a key alone means OpenAI itself."""
    base_url = env.get("FR_AGENT_LLM_BASE_URL") or llm.base_url or env.get("OPENAI_BASE_URL")
    model = env.get("FR_AGENT_LLM_MODEL") or llm.model
    key = (
        env.get("FR_AGENT_LLM_API_KEY")
        or (llm.api_key.get_secret_value() if llm.api_key else None)
        or env.get("OPENAI_API_KEY")
    )
    if not model or not (base_url or key):
        return None
    return Endpoint(
        base_url=(base_url or OPENAI_BASE_URL).rstrip("/"), model=model, api_key=SecretStr(key) if key else None
    )


def estimate_tokens(value: Any) -> int:
    """About four characters a token: used for budgets before a call and when a server reports no usage."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return max(1, len(text) // 4)


# ---------------------------------------------------------------------------------------------------
# Tool schemas


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: name, description and the JSON schema of its pydantic args model."""

    name: str
    description: str
    args_model: type[BaseModel]

    def schema(self, strict: bool) -> dict:
        if strict:
            parameters = to_strict_json_schema(self.args_model)
        else:
            parameters = self.args_model.model_json_schema()
        function = {"name": self.name, "description": self.description, "parameters": parameters}
        if strict:
            function["strict"] = True
        return {"type": "function", "function": function}


def tools_as_text(tools: list[ToolSpec]) -> str:
    """For endpoints without native tool calling: the same schemas, and how to call them in text."""
    lines = [
        "You can call these tools. To call one, reply with exactly one JSON object",
        '{"name": "<tool>", "arguments": {...}} and nothing else after it.',
    ]
    for spec in tools:
        lines.append(
            f"- {spec.name}: {spec.description}\n  arguments schema: "
            f"{json.dumps(spec.args_model.model_json_schema(), separators=(',', ':'))}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Replies: what the client reads of a chat completion, validated (the SDK builds its objects unchecked, so
# a junk body would otherwise surface as an AttributeError deep in the planner).


class WireFunction(BaseModel):
    name: str
    arguments: str | dict | None = None


class WireToolCall(BaseModel):
    id: str | None = None
    function: WireFunction


class WireMessage(BaseModel):
    content: str | None = None
    tool_calls: list[WireToolCall] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class WireChoice(BaseModel):
    message: WireMessage
    finish_reason: str | None = None


class WireUsage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class WireCompletion(BaseModel):
    choices: list[WireChoice] = Field(min_length=1)
    usage: WireUsage | None = None


class WireModel(BaseModel):
    id: str
    max_model_len: int | None = Field(None, description="vLLM: the model's context window")


class WireModels(BaseModel):
    data: list[WireModel]


class ParsedCall(BaseModel):
    id: str | None = None
    name: str
    arguments: dict[str, Any] | None = None
    error: str | None = Field(None, description="why the arguments could not be read as a JSON object")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMReply(BaseModel):
    content: str = Field(description="the answer text, thinking removed")
    thinking: str | None = None
    reasoning_content: str | None = None
    calls: list[ParsedCall] = Field(default_factory=list)
    native: bool = Field(description="calls came as the API's tool_calls (answered with tool messages)")
    think_tags: bool = False
    finish_reason: str | None = None
    usage: Usage
    latency_s: float
    assistant_message: dict = Field(description="the turn to append to the conversation, quirks applied")


THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.S)
TAGGED_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def split_thinking(text: str) -> tuple[str, str | None]:
    """(answer, thinking). Handles a closed block, a block whose `<think>` was in the prompt template
    (only `</think>` comes back), and an answer cut off while still thinking."""
    thoughts: list[str] = []
    text = THINK_BLOCK.sub(lambda m: thoughts.append(m.group(1)) or "", text)
    if "</think>" in text:
        head, _, text = text.rpartition("</think>")
        thoughts.append(head)
    if "<think>" in text:
        text, _, rest = text.partition("<think>")
        thoughts.append(rest)
    thinking = "\n".join(t.strip() for t in thoughts if t.strip())
    return text.strip(), thinking or None


NOT_JSON = object()


def json_spans(text: str) -> Iterator[tuple[int, int, Any]]:
    """(start, end, value) of every top-level JSON object or array embedded in free text, in order; a `{` or
    `[` that starts no JSON value comes as (start, start + 1, NOT_JSON)."""
    decoder, index = json.JSONDecoder(), 0
    while index < len(text):
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value, index = NOT_JSON, start + 1
        yield start, index, value


def json_values(text: str) -> list[Any]:
    """Every top-level JSON object or array embedded in free text, in order."""
    return [value for _, _, value in json_spans(text) if value is not NOT_JSON]


def calls_from_json(value: Any) -> list[ParsedCall]:
    """Tool calls in the shapes models write them: {"name", "arguments"}, {"tool", "args"},
    {"function": {...}}, {"tool_calls": [...]}, or a list of those. Anything else is not a call."""
    if isinstance(value, list):
        return [call for item in value for call in calls_from_json(item)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("tool_calls"), list):
        return calls_from_json(value["tool_calls"])
    if isinstance(value.get("function"), dict):
        return calls_from_json({**value["function"], "id": value.get("id")})
    name = value.get("name", value.get("tool"))
    if not isinstance(name, str):
        return []
    arguments = value.get("arguments", value.get("args", value.get("parameters", {})))
    return [parsed_call(value.get("id"), name, arguments)]


def parsed_call(call_id: str | None, name: str, arguments: Any) -> ParsedCall:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            return ParsedCall(id=call_id, name=name, error=f"arguments are not valid JSON: {err}")
    if not isinstance(arguments, dict):
        return ParsedCall(id=call_id, name=name, error="arguments must be a JSON object")
    return ParsedCall(id=call_id, name=name, arguments=arguments)


def calls_in_text(text: str) -> list[ParsedCall]:
    chunks = TAGGED_CALL.findall(text) or FENCED.findall(text) or [text]
    return [call for chunk in chunks for value in json_values(chunk) for call in calls_from_json(value)]


def strip_calls(text: str) -> str:
    """The prose of a reply whose tool calls were written as text."""
    text = FENCED.sub("", TAGGED_CALL.sub("", text))
    out, index = [], 0
    for start, end, value in json_spans(text):
        out.append(text[index:start] if value is not NOT_JSON and calls_from_json(value) else text[index:end])
        index = end
    out.append(text[index:])
    return " ".join("".join(out).split())


# ---------------------------------------------------------------------------------------------------
# The client


class Capabilities(BaseModel):
    """What this endpoint accepted so far; a feature it refused is dropped for the client's lifetime."""

    native_tools: bool = True
    strict: bool = True
    tool_choice: Literal["required", "auto", "omit"] = "required"
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    send_reasoning: bool = True
    dropped: list[str] = Field(default_factory=list, description="features refused, with the server's words")


def one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_text(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        return one_line(message or err.message)
    return one_line(body or err.message)


class Refused(BaseModel):
    """A request the endpoint refused or could not answer: kept so the caller can record every request."""

    request: dict
    error: str


def token_limit(message: str) -> tuple[int, int | None] | None:
    """(context window, prompt tokens if named) when a refusal is about the token limit, else None."""
    window = WINDOW_IN_ERROR.search(message)
    if window is None:
        return None
    prompt = PROMPT_IN_ERROR.search(message)
    prompt_tokens = int(next(g for g in prompt.groups() if g)) if prompt else None
    return int(next(g for g in window.groups() if g)), prompt_tokens


class LLMClient:
    def __init__(
        self,
        endpoint: Endpoint,
        settings: LLMSettings,
        *,
        max_retries: int | None = None,
        timeout_s: float | None = None,
    ):
        self.endpoint = endpoint
        self.settings = settings
        self.max_retries = settings.max_retries if max_retries is None else max_retries
        self.timeout_s = timeout_s or settings.timeout_s
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else "no-key"  # local servers need none
        self.sdk = openai.OpenAI(
            base_url=endpoint.base_url, api_key=key, timeout=self.timeout_s, max_retries=self.max_retries
        )
        self.caps = Capabilities(strict=settings.strict != "off")
        self.last_request: dict = {}
        self.refused: list[Refused] = []  # this chat's refused requests, the failing one last
        self.context_window: int | None = None
        self.models_read = False
        self.chars_per_token = FIRST_CHARS_PER_TOKEN

    def read_models(self) -> list[str] | None:
        """The model ids `/v1/models` lists (None when it lists nothing readable); the endpoint model's
        `max_model_len`, where the server reports one, becomes the context window."""
        self.models_read = True
        try:
            listed = WireModels.model_validate_json(self.sdk.models.with_raw_response.list().http_response.text)
        except (openai.OpenAIError, ValidationError, UnicodeDecodeError):
            return None
        ours = [m for m in listed.data if m.id == self.endpoint.model] or listed.data[:1]
        if ours and ours[0].max_model_len:
            self.context_window = ours[0].max_model_len
        return [m.id for m in listed.data]

    def prompt_estimate(self, messages: list[dict], tools: list[ToolSpec]) -> int:
        """The prompt's tokens as this endpoint counts them, erring high: characters of the request as it will
        be sent, at the ratio the server's own usage showed (a conservative guess until it reports one)."""
        body = self.request(messages, tools, MIN_COMPLETION_TOKENS)
        chars = len(json.dumps(body["messages"])) + len(json.dumps(body.get("tools", [])))
        return int(chars / self.chars_per_token * ESTIMATE_MARGIN) + 1

    def fitted(self, prompt_tokens: int, max_tokens: int) -> int:
        """max_tokens lowered to what the context window leaves after the prompt."""
        if self.context_window is None:
            return max_tokens
        room = self.context_window - prompt_tokens
        if room < MIN_COMPLETION_TOKENS:
            raise LLMError(
                f"the prompt (about {prompt_tokens} tokens) does not fit {self.endpoint.where}'s context window "
                f"of {self.context_window} tokens"
            )
        return min(max_tokens, room)

    def request(self, messages: list[dict], tools: list[ToolSpec], max_tokens: int) -> dict:
        """The request body as it will be sent with the current capabilities."""
        if tools and not self.caps.native_tools:
            messages = with_system_text(messages, tools_as_text(tools))
        messages = [self._outgoing(m) for m in messages]
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            self.caps.max_tokens_param: max_tokens,
        }
        if tools and self.caps.native_tools:
            body["tools"] = [spec.schema(self.caps.strict) for spec in tools]
            if self.caps.tool_choice != "omit":
                body["tool_choice"] = self.caps.tool_choice
        return body

    def _outgoing(self, message: dict) -> dict:
        out = dict(message)
        if not self.caps.send_reasoning:
            out.pop("reasoning_content", None)
        if not self.caps.native_tools and out.get("role") == "tool":  # no tool role without native tools
            out = {"role": "user", "content": f"Result of {out.get('name', 'the tool')}: {out['content']}"}
        if not self.caps.native_tools and out.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")}
                for c in out["tool_calls"]
            ]
            out = {"role": "assistant", "content": (out.get("content") or "") + "\n" + json.dumps(calls)}
        return out

    def chat(self, messages: list[dict], tools: list[ToolSpec], max_tokens: int) -> LLMReply:
        """One answer. Requests refused on the way (a dropped feature, a lowered max_tokens) and the failing
        one, if any, are in `self.refused` afterwards."""
        self.refused = []
        lowered = False
        for _ in range(7):  # each pass can drop one refused feature, or lower max_tokens once
            max_tokens = self.fitted(self.prompt_estimate(messages, tools), max_tokens)
            body = self.request(messages, tools, max_tokens)
            self.last_request = body
            started = time.monotonic()
            try:
                raw = self.sdk.chat.completions.with_raw_response.create(**body)
            except openai.BadRequestError as err:
                message = error_text(err)
                limit = None if lowered else token_limit(message)
                if limit is not None:
                    lowered = True
                    max_tokens = self._lowered(limit, body, max_tokens, message)
                    self.refused.append(Refused(request=body, error=f"HTTP 400: {message}"))
                    continue
                self.refused.append(Refused(request=body, error=f"HTTP 400: {message}"))
                if self._drop_refused_feature(message, body):
                    continue
                raise LLMError(f"{self.endpoint.where} refused the request (HTTP 400): {message}") from None
            except openai.OpenAIError as err:
                failure = self._failure(err)
                self.refused.append(Refused(request=body, error=str(failure)))
                raise failure from None
            try:
                return self._reply(raw.http_response, body, round(time.monotonic() - started, 3))
            except LLMError as err:
                self.refused.append(Refused(request=body, error=str(err)))
                raise
        raise LLMError(f"{self.endpoint.where} kept refusing requests: dropped {', '.join(self.caps.dropped)}")

    def _lowered(self, limit: tuple[int, int | None], body: dict, max_tokens: int, message: str) -> int:
        """max_tokens for the one retry after a 400 about the token limit; the window is kept."""
        window, prompt_tokens = limit
        self.context_window = min(window, self.context_window or window)
        prompt = prompt_tokens if prompt_tokens is not None else self.prompt_estimate(body["messages"], [])
        room = window - prompt
        if room < MIN_COMPLETION_TOKENS or room >= max_tokens:
            raise LLMError(
                f"{self.endpoint.where} refused the request (HTTP 400): {message}; the prompt (about {prompt} "
                f"tokens) leaves no room in its context window of {window} tokens"
            )
        return room

    def _drop_refused_feature(self, message: str, body: dict) -> bool:
        text = message.lower()
        caps = self.caps
        if body.get("tools") and caps.strict and "strict" in text:
            caps.strict = False
        elif caps.max_tokens_param == "max_tokens" and "max_tokens" in text and "max_completion_tokens" in text:
            caps.max_tokens_param = "max_completion_tokens"
        elif (
            caps.send_reasoning
            and "reasoning_content" in text
            and "passed back" not in text
            and any("reasoning_content" in m for m in body["messages"])
        ):
            caps.send_reasoning = False
        elif "tool_choice" in body and re.search(r"tool.?choice", text):
            caps.tool_choice = "auto" if caps.tool_choice == "required" else "omit"
        elif body.get("tools") and re.search(r"\btools?\b|function", text):
            caps.native_tools = False
        else:
            return False
        caps.dropped.append(message)
        return True

    def _failure(self, err: openai.OpenAIError) -> LLMError:
        where, tries = self.endpoint.where, self.max_retries + 1
        if isinstance(err, openai.APITimeoutError):
            return LLMError(f"{where} did not answer within {self.timeout_s:g}s ({tries} tries)")
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__ or err.__context__
            return LLMError(f"cannot reach {where} ({tries} tries): {one_line(cause or err.message)}")
        if isinstance(err, openai.AuthenticationError):
            return LLMError(f"{where} refused the API key (HTTP 401): set FR_AGENT_LLM_API_KEY: {error_text(err)}")
        if isinstance(err, openai.RateLimitError):
            return LLMError(f"{where} is rate limiting (HTTP 429 after {tries} tries): {error_text(err)}")
        if isinstance(err, openai.APIStatusError):
            retried = f" after {tries} tries" if err.status_code >= 500 else ""
            return LLMError(f"{where} answered HTTP {err.status_code}{retried}: {error_text(err)}")
        return LLMError(f"{where}: {type(err).__name__}: {one_line(err)}")

    def _completion(self, response: httpx.Response) -> WireCompletion:
        """The body as a chat completion, or one line saying what came instead."""
        try:
            text = response.text
            return WireCompletion.model_validate_json(text)
        except (ValidationError, UnicodeDecodeError, httpx.HTTPError) as err:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            what = (
                f"{first_error(err)}: {one_line(response.text, 120)}"
                if isinstance(err, ValidationError)
                else one_line(err, 120)
            )
            raise LLMError(
                f"{self.endpoint.where} answered HTTP {response.status_code} ({kind}) with something that is not "
                f"a chat completion: {what}"
            ) from None

    def _reply(self, response: httpx.Response, body: dict, latency_s: float) -> LLMReply:
        completion = self._completion(response)
        choice = completion.choices[0]
        message = choice.message
        raw = message.content or ""
        reasoning = message.reasoning_content or message.reasoning
        content, thinking = split_thinking(raw)
        if message.tool_calls:
            calls = [
                parsed_call(tc.id or f"call_{i}", tc.function.name, tc.function.arguments)
                for i, tc in enumerate(message.tool_calls)
            ]
            native = True
        else:
            calls, native = calls_in_text(content), False
        usage = completion.usage
        if usage is not None and usage.prompt_tokens is not None:
            counted = Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens or 0)
            chars = len(json.dumps(body["messages"])) + len(json.dumps(body.get("tools", [])))
            self.chars_per_token = max(1.0, chars / max(1, usage.prompt_tokens))
        else:
            counted = Usage(
                prompt_tokens=estimate_tokens(body["messages"]) + estimate_tokens(body.get("tools", [])),
                completion_tokens=estimate_tokens(
                    raw + (reasoning or "") + json.dumps([c.model_dump() for c in calls])
                ),
                estimated=True,
            )
        turn: dict[str, Any] = {"role": "assistant", "content": content or None}
        if native:
            turn["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": json.dumps(c.arguments) if c.arguments is not None else "{}",
                    },
                }
                for c in calls
            ]
            if reasoning:  # DeepSeek: a tool-calling turn's reasoning must go back with every later request
                turn["reasoning_content"] = reasoning
        else:
            turn["content"] = content
        return LLMReply(
            content=content,
            thinking=thinking or reasoning,
            reasoning_content=reasoning,
            calls=calls,
            native=native,
            think_tags=thinking is not None,
            finish_reason=choice.finish_reason,
            usage=counted,
            latency_s=latency_s,
            assistant_message=turn,
        )


def with_system_text(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


# ---------------------------------------------------------------------------------------------------
# Capability probe: `fr-agent llm check`, and `--planner auto`


class EchoArgs(BaseModel):
    """Echo one word back."""

    model_config = {"extra": "forbid"}

    word: str


ECHO = ToolSpec(name="echo", description="Echo one word back to the caller.", args_model=EchoArgs)


class ProbeReport(BaseModel):
    endpoint: str
    model: str
    answers: bool = False
    models_listed: list[str] | None = None
    context_window: int | None = Field(None, description="max_model_len from /v1/models, or from a refusal")
    native_tool_calls: bool = False
    text_tool_calls: bool = False
    tool_choice: str = "required"
    strict: bool = False
    think_tags: bool = False
    reasoning_content: bool = False
    reasoning_sent_back: bool | None = None
    usage_reported: bool = False
    latency_s: float | None = None
    tokens: int = 0
    dropped: list[str] = Field(default_factory=list)
    error: str | None = None

    @property
    def usable(self) -> bool:
        """Good enough to plan with: it answers and its tool calls can be read (natively or as text)."""
        return self.answers and (self.native_tool_calls or self.text_tool_calls)


def probe(
    endpoint: Endpoint, settings: LLMSettings, *, max_retries: int | None = None, timeout_s: float | None = None
) -> tuple[ProbeReport, LLMClient]:
    """Ask the endpoint for one tool call and, when it makes one, send the result back (with any
    reasoning_content): what works is recorded; the client keeps the capabilities it learned."""
    client = LLMClient(endpoint, settings, max_retries=max_retries, timeout_s=timeout_s)
    report = ProbeReport(endpoint=endpoint.where, model=endpoint.model)
    report.models_listed = client.read_models()
    messages = [
        {"role": "system", "content": "You are a connectivity probe. Use the tool you are given."},
        {"role": "user", "content": 'Call the tool `echo` with word "pong".'},
    ]
    budget = settings.max_completion_tokens  # what the planner asks for, so a limit shows here first
    try:
        reply = client.chat(messages, [ECHO], budget)
        report.answers = True
        report.latency_s = reply.latency_s
        report.tokens += reply.usage.total
        report.usage_reported = not reply.usage.estimated
        report.think_tags = reply.think_tags
        report.reasoning_content = reply.reasoning_content is not None
        echo = next((c for c in reply.calls if c.name == "echo" and c.arguments is not None), None)
        report.native_tool_calls = bool(echo and reply.native)
        report.text_tool_calls = bool(echo and not reply.native)
        if echo is None and reply.finish_reason == "length":
            report.error = (
                f"the reply was cut off (finish_reason: length) after {reply.usage.completion_tokens} completion "
                f"tokens of the {client.last_request.get(client.caps.max_tokens_param)} asked, before any tool call"
            )
        if echo and reply.native:
            follow = [
                *messages,
                reply.assistant_message,
                {"role": "tool", "tool_call_id": echo.id, "name": "echo", "content": "pong received"},
                {"role": "user", "content": "Reply with the single word: done"},
            ]
            second = client.chat(follow, [ECHO], budget)
            report.tokens += second.usage.total
            report.reasoning_sent_back = True if report.reasoning_content else None
    except LLMError as err:
        report.error = str(err)
    # Only a native call that came back shows what the endpoint honours; not being refused shows nothing.
    report.strict = report.native_tool_calls and client.caps.strict
    if not client.caps.native_tools:
        report.tool_choice = "none (tools refused)"
    elif report.native_tool_calls:
        report.tool_choice = client.caps.tool_choice
    else:
        report.tool_choice = f"{client.caps.tool_choice} sent, unconfirmed (no native tool call came back)"
    report.context_window = client.context_window
    report.dropped = list(client.caps.dropped)
    return report, client
