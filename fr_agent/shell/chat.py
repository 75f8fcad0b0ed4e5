"""The chat side of a run: hints a user sends while it is live, and the stdin session of `fr-agent run`.

Hints go to `runs/<id>/hints.jsonl` (from the session's stdin, or `fr-agent hint RUN "text"` from another
terminal). The planner takes the undelivered ones at its next round; each delivery is a `chat` event in
the transcript, and the loop's state keeps the delivered ids, so a resumed run never delivers a hint
twice. Approval answers typed in the session go to the approval prompt, which stays a langgraph interrupt.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import Event
from fr_agent.core.hints import HintBox

# ---------------------------------------------------------------------------------------------------
# The stdin session

ANSWERS = {"", "y", "yes", "n", "no", "e", "edit"}
END = object()


class ChatSession:
    """Reads stdin on a thread while a run is live. A line that answers an approval prompt (y/n/e, an
    empty line, or JSON arguments after `e`) goes to the prompt; any other line is a hint for the planner.
    On a terminal, an answer typed while nothing waits for approval is dropped rather than kept for later."""

    def __init__(
        self,
        stream: IO[str],
        say: Callable[[str], None],
        *,
        terminal: bool,
        prompt: Callable[[str], None] | None = None,
        runs_dir: Path | None = None,
    ):
        self.stream, self.say, self.terminal, self.runs_dir = stream, say, terminal, runs_dir
        self.prompt = prompt or say
        self.answers: queue.Queue = queue.Queue()
        self.waiting = threading.Event()
        self.box: HintBox | None = None
        self.early: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="fr-agent-chat", daemon=True).start()

    def attach(self, run_dir: Path) -> None:
        with self._lock:
            self.box = HintBox(run_dir)
            early, self.early = self.early, []
        for text in early:
            self._hint(text)

    def on_event(self, event: Event) -> None:
        """Transcript listener: the run's directory is known from the first event the session sees."""
        if self.box is None and self.runs_dir is not None:
            self.attach(self.runs_dir / event.run_id)

    def _read(self) -> None:
        try:
            for raw in self.stream:
                self._route(raw.rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        self.answers.put(END)

    def _route(self, line: str) -> None:
        text = line.strip()
        if text.lower() in ANSWERS or text.startswith("{"):
            if self.terminal and not self.waiting.is_set():
                if text:
                    self.say(f"no fix is waiting for approval; {text!r} ignored (any other text is a hint)")
                return
            self.answers.put(text)
            return
        self._hint(text)

    def _hint(self, text: str) -> None:
        with self._lock:
            if self.box is None:
                self.early.append(text)
                return
        try:
            self.box.add(text, "session")
            self.say(f"hint noted: {text!r}; the planner reads it at its next round")
        except FrAgentError as err:
            self.say(f"hint not noted: {err}")

    def ask(self, prompt: str, default: str) -> str:
        """The next answer line, `default` for an empty one; EOFError when stdin ended."""
        self.prompt(f"{prompt} [{default}]: ")
        self.waiting.set()
        try:
            answer = self.answers.get()
        finally:
            self.waiting.clear()
        if answer is END:
            self.answers.put(END)
            raise EOFError
        return answer or default


def approval_answer(session: ChatSession, request: dict) -> dict:
    """One approval prompt answered through the session: approve, decline, or edit the arguments."""
    call = request["call"]
    if request.get("needs_approval"):  # asked even under --yes, and the default is no
        session.say(f"this fix needs your explicit approval: {request['needs_approval']}")
    default = "n" if request.get("needs_approval") else "y"
    answer = session.ask(f"apply {call['tool']}({json.dumps(call['args'])})? [y]es / [n]o / [e]dit", default)
    if answer.lower().startswith("n"):
        return {"decision": "decline"}
    if answer.lower().startswith("e"):
        raw = session.ask("arguments as JSON", json.dumps(call["args"]))
        try:
            return {"decision": "edit", "args": json.loads(raw)}
        except json.JSONDecodeError as err:
            session.say(f"not JSON ({err}); declining")
            return {"decision": "decline"}
    return {"decision": "approve"}
