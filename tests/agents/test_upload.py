"""Publishing to the hub through HfApi, against a local hub started here (HF_ENDPOINT), and to a local folder.

One commit per publish, private by default, unchanged content makes no commit, --dry-run sends nothing,
a card that fails the linter (a failed gate) goes nowhere, and the token shows up nowhere.
"""

from __future__ import annotations

import pytest
from cli_helpers import fr_agent
from fake_hub import FakeHub
from huggingface_hub import constants
from release_data import make_recipe, make_report

from fr_agent.agents.publish import publish
from fr_agent.agents.upload import MARKER, copy_to_dir, upload_to_hub
from fr_agent.core.errors import FrAgentError
from fr_agent.core.events import PublishEvent, of_kind, read_events
from fr_agent.shell.cli.publish import CardRejected, publish_command

TOKEN = "hf_TestTokenNeverPrinted0123456789abcd"
REPO = "fr-agent-test/qwen-cpu"


@pytest.fixture
def hub(monkeypatch):
    with FakeHub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest makes tests offline; this one talks
        yield server


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return publish(make_recipe(), make_report(), tmp_path_factory.mktemp("release") / "publish", run_id="run-1").out_dir


def writes(hub: FakeHub) -> list[str]:
    return [path for method, path in hub.requests if method == "POST" and path != "/api/validate-yaml"]


def test_first_publish_creates_a_private_repo_in_one_commit(hub, release):
    result = upload_to_hub(release, REPO, message="fr-agent publish run-1")
    repo = hub.repos[REPO]
    assert result.created and repo.private
    assert [c.message for c in repo.commits] == ["initial commit", "fr-agent publish run-1"]
    assert result.commit == repo.commits[-1].oid
    local = {p.name: p.read_bytes() for p in release.iterdir()}
    assert {k: v for k, v in repo.files.items() if k != ".gitattributes"} == local
    assert "eval.png" in repo.commits[-1].added and "README.md" in repo.commits[-1].added


def test_unchanged_content_makes_no_new_commit(hub, release):
    first = upload_to_hub(release, REPO)
    before = list(hub.requests)
    second = upload_to_hub(release, REPO)
    assert len(hub.repos[REPO].commits) == 2
    assert not second.plan.has_changes and second.commit == first.commit
    assert sorted(second.plan.unchanged) == sorted(p.name for p in release.iterdir())
    assert writes_since(hub, before) == []


def writes_since(hub: FakeHub, before: list) -> list[str]:
    return [path for method, path in hub.requests[len(before) :] if method == "POST"]


def test_changed_and_removed_files_make_exactly_one_commit(hub, release, tmp_path):
    upload_to_hub(release, REPO)
    folder = tmp_path / "changed"
    folder.mkdir()
    for path in release.iterdir():
        if path.name != "fr-agent.env":
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "eval.md").write_text("# Eval\n\nnew text\n")
    result = upload_to_hub(folder, REPO)
    commits = hub.repos[REPO].commits
    assert len(commits) == 3
    assert commits[-1].added == ["eval.md"] and commits[-1].deleted == ["fr-agent.env"]
    assert result.plan.changed == ["eval.md"] and result.plan.deleted == ["fr-agent.env"]
    assert ".gitattributes" in hub.repos[REPO].files  # the hub's own file is left alone


def test_dry_run_sends_nothing(hub, release):
    result = upload_to_hub(release, REPO, dry_run=True)
    assert result.dry_run and not result.plan.exists and len(result.plan.added) == len(list(release.iterdir()))
    assert REPO not in hub.repos and writes(hub) == []


def test_public_only_when_asked(hub, release):
    upload_to_hub(release, REPO, private=False)
    assert hub.repos[REPO].private is False


def test_missing_or_wrong_token_and_offline_mode(hub, release, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_WrongTokenAlsoNeverPrinted987654321")
    with pytest.raises(FrAgentError) as err:
        upload_to_hub(release, REPO)
    assert "hf_WrongToken" not in str(err.value) and str(err.value).startswith("hub: ")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(FrAgentError, match="HF_TOKEN is not set"):
        upload_to_hub(release, REPO)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FrAgentError, match="HF_HUB_OFFLINE is set"):
        upload_to_hub(release, REPO)
    assert REPO not in hub.repos


def test_local_target_is_idempotent_and_deletes_only_its_own_files(release, tmp_path):
    target = tmp_path / "out"
    first = copy_to_dir(release, target)
    assert sorted(first.plan.added) == sorted(p.name for p in release.iterdir())
    assert (target / "README.md").read_bytes() == (release / "README.md").read_bytes()
    assert not copy_to_dir(release, target).plan.has_changes
    (target / "notes.txt").write_text("mine")  # not written by fr-agent: never deleted
    smaller = tmp_path / "smaller"
    smaller.mkdir()
    (smaller / "README.md").write_bytes((release / "README.md").read_bytes())
    result = copy_to_dir(smaller, target)
    assert "Dockerfile" in result.plan.deleted and "notes.txt" not in result.plan.deleted
    assert sorted(p.name for p in target.iterdir()) == sorted([MARKER, "README.md", "notes.txt"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(FrAgentError, match="not an fr-agent publish target"):
        copy_to_dir(release, foreign)


def make_run(home, run_id: str, report) -> None:
    """A finished run as the loop leaves it: request, checkpointed state, eval.json."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    from fr_agent.agents.run_state import RunState
    from fr_agent.core.request import RunRequest

    run_dir = home / "runs" / run_id
    run_dir.mkdir(parents=True)
    request = RunRequest(model="Qwen2.5-0.5B-Instruct", chip="cpu")
    (run_dir / "request.json").write_text(request.model_dump_json())
    (run_dir / "eval.json").write_text(report.model_dump_json())
    graph = StateGraph(RunState)
    graph.add_node("done", lambda state: {"status": "passed"})
    graph.add_edge(START, "done")
    graph.add_edge("done", END)
    with SqliteSaver.from_conn_string(str(run_dir / "checkpoints.sqlite")) as saver:
        graph.compile(checkpointer=saver).invoke(
            RunState(request=request, recipe=make_recipe()), {"configurable": {"thread_id": run_id}}
        )


@pytest.fixture
def runs(tmp_path):
    home = tmp_path / "home"
    make_run(home, "20261123-000000-good", make_report())
    make_run(home, "20261123-000001-failed", make_report(agreement=0.5))
    return home


def test_cli_publish_uploads_once_then_makes_no_commit(runs):
    with FakeHub(TOKEN) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"}
        first = fr_agent("publish", "20261123-000000-good", "--repo-id", REPO, home=runs, env=env)
        assert first.returncode == 0, first.stderr
        assert "card lint: clean" in first.stdout and f"committed {hub.repos[REPO].commits[-1].oid}" in first.stdout
        again = fr_agent("publish", "20261123-000000-good", "--repo-id", REPO, home=runs, env=env)
        assert again.returncode == 0 and "no changes: no commit" in again.stdout
        assert len(hub.repos[REPO].commits) == 2 and hub.repos[REPO].private
    for result in (first, again):
        assert TOKEN not in result.stdout + result.stderr
    published = of_kind(read_events(runs / "runs" / "20261123-000000-good" / "transcript.jsonl"), PublishEvent)
    assert [e.changed for e in published] == [True, False]
    for path in runs.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def publish_cmd(run: str, home, **options):
    return publish_command(
        run,
        home=home,
        **{
            "repo_id": None,
            "to": None,
            "dry_run": False,
            "public": False,
            "license": None,
            "config": None,
            "as_json": False,
            **options,
        },
    )


def test_publish_dry_run_and_a_failed_gate_send_nothing(hub, runs, tmp_path, capsys):
    publish_cmd("20261123-000000-good", runs, repo_id=REPO, dry_run=True)
    out = capsys.readouterr().out
    assert "dry run" in out and "would make one commit" in out and REPO not in hub.repos
    with pytest.raises(CardRejected):
        publish_cmd("20261123-000001-failed", runs, repo_id="fr-agent-test/failed")
    assert "gate: the eval gate failed" in capsys.readouterr().err and writes(hub) == []
    with pytest.raises(CardRejected):
        publish_cmd("20261123-000001-failed", runs, to=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FrAgentError, match="either --repo-id or --to"):
        publish_cmd("20261123-000000-good", runs, repo_id=REPO, to=tmp_path / "out")


def test_publish_refuses_a_run_without_an_eval_and_a_bad_repo_id(runs):
    (runs / "runs" / "20261123-000000-good" / "eval.json").unlink()
    with pytest.raises(FrAgentError, match="has no eval: it stopped before the eval agent ran"):
        publish_cmd("20261123-000000-good", runs)
    with pytest.raises(FrAgentError, match="expected NAME or OWNER/NAME"):
        publish_cmd("20261123-000001-failed", runs, repo_id="a/b/c")
