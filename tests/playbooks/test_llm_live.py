"""Against a real endpoint, opt-in: `pytest --run-live tests/playbooks/test_llm_live.py` with
FR_AGENT_LLM_BASE_URL, FR_AGENT_LLM_MODEL and (if it needs one) FR_AGENT_LLM_API_KEY set.
The probe must find a usable endpoint, and one planning round on a real captured failure must come
back with a call the loop accepts, from the model itself rather than the playbook fallback."""

from __future__ import annotations

import pytest

from fr_agent.core.config import Settings
from fr_agent.core.events import LLMCallEvent, NoteEvent, of_kind
from fr_agent.playbooks.llm_client import probe, resolve_endpoint
from fr_agent.playbooks.llm_planner import LLMPlanner
from tests.playbooks.llm_helpers import events, make_round

pytestmark = pytest.mark.live


@pytest.fixture
def endpoint():
    found = resolve_endpoint(Settings().llm)
    if found is None:
        pytest.fail("--run-live needs FR_AGENT_LLM_BASE_URL and FR_AGENT_LLM_MODEL")
    return found


def test_live_endpoint_answers_the_probe(endpoint):
    report, _ = probe(endpoint, Settings().llm)
    assert report.usable, report.model_dump()


def test_live_round_on_a_real_failure(endpoint, run):
    planner = LLMPlanner(endpoint, Settings(), run[0])
    round_ = make_round(run)
    calls = planner.propose(round_)
    assert round_.source == "llm", of_kind(events(run), NoteEvent)
    assert calls and calls[0].tool in ("install_dependency", "set_env_var", "patch_operator", "fix_serve_config")
    recorded = of_kind(events(run), LLMCallEvent)
    assert recorded and all(e.latency_s > 0 for e in recorded)
