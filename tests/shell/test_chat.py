"""The chat side of a run: the hints file and the stdin session that splits approval answers from hints."""

from __future__ import annotations

import io
import os
import threading
import time
from datetime import UTC, datetime

import pytest

from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import NoteEvent, Transcript
from fr_agent.core.hints import HintBox
from fr_agent.shell.chat import ChatSession, approval_answer
from tests.cli_helpers import fr_agent, one_line_error

CALL = {"call": {"tool": "install_dependency", "args": {"package": "torchvision", "action": "remove"}}}


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_hints_are_delivered_once_even_across_a_resume(tmp_path):
    box = HintBox(tmp_path)
    first = box.add("try   float16\n", "session")
    second = box.add("why that package?", "cli")
    assert first.text == "try float16" and [h.id for h in box.pending()] == [first.id, second.id]
    # the loop keeps the delivered ids in its checkpointed state: a new box, as after a resume, skips them
    assert [h.id for h in HintBox(tmp_path).pending(delivered=[first.id])] == [second.id]
    with pytest.raises(FrAgentError, match="needs some text"):
        box.add("   ", "cli")
    with pytest.raises(FrAgentError, match="at most 2000"):
        box.add("x" * 2001, "cli")


def test_piped_session_answers_prompts_and_keeps_hints(tmp_path):
    said: list[str] = []
    session = ChatSession(
        io.StringIO('try float32\ne\n{"package": "torchvision", "action": "remove"}\nn\n'),
        said.append,
        terminal=False,
        runs_dir=tmp_path,
    )
    assert approval_answer(session, CALL) == {
        "decision": "edit",
        "args": {"package": "torchvision", "action": "remove"},
    }
    assert approval_answer(session, CALL) == {"decision": "decline"}
    assert not (tmp_path / "run-1").exists()
    # The hint came before the run directory was known: kept, then written once the run's first event names it.
    (tmp_path / "run-1").mkdir()
    session.on_event(NoteEvent(run_id="run-1", ts=datetime.now(UTC), message="resumed"))
    assert [h.text for h in HintBox(tmp_path / "run-1").pending()] == ["try float32"]
    assert any("hint noted: 'try float32'" in line for line in said)
    with pytest.raises(EOFError):
        approval_answer(session, CALL)


def test_terminal_session_drops_answers_typed_while_nothing_waits(tmp_path):
    read_end, write_end = os.pipe()
    said: list[str] = []
    with os.fdopen(read_end) as stream, os.fdopen(write_end, "w") as typing:
        session = ChatSession(stream, said.append, terminal=True)
        session.attach(tmp_path)
        typing.write("y\nwhy that package?\n")
        typing.flush()
        assert wait_until(lambda: HintBox(tmp_path).pending())
        assert any("no fix is waiting for approval; 'y' ignored" in line for line in said)
        answers: list[dict] = []
        prompt = threading.Thread(target=lambda: answers.append(approval_answer(session, CALL)))
        prompt.start()
        assert wait_until(session.waiting.is_set)
        typing.write("\n")  # Enter takes the default
        typing.flush()
        prompt.join(5)
    assert answers == [{"decision": "approve"}]
    assert [h.text for h in HintBox(tmp_path).pending()] == ["why that package?"]


def test_hint_command_refuses_a_finished_run(fr_home):
    run_dir = fr_home / "runs" / "hint-finished-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "request.json").write_text('{"model": "tiny-llama", "chip": "cpu"}')
    transcript = Transcript(run_dir / "transcript.jsonl", run_dir.name)
    transcript.emit("run_finished", status="passed", reason="done", fixes=[], passed=[])
    transcript.close()
    result = fr_agent("hint", run_dir.name, "too late", home=fr_home)
    assert result.returncode == 2 and "already finished" in one_line_error(result)
    assert not (run_dir / "hints.jsonl").exists()
