"""Usage errors on every command, generated: exit 2, one line on stderr, no traceback, nothing written.

The CLI runs in this process (main() as the console script calls it), so hypothesis can try hundreds of
argument lists in seconds. Each list carries an option no command has, so parsing always fails before a
command body runs; what varies is the command, the other tokens (valid options, junk, unicode) and
their order. FR_AGENT_HOME is a temporary folder that must stay empty."""

from __future__ import annotations

import sys

import click
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fr_agent.shell.cli import app, main

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = command_paths(typer.main.get_command(app))
TOKENS = st.one_of(
    st.sampled_from(["--json", "--yes", "--chip", "cpu", "--home", "--config", "latest", "-", "--", "-y", "x"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["fr-agent", *argv]
    try:
        with pytest.raises(SystemExit) as done:
            main()
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return done.value.code, out, err


@FAST
@given(
    command=st.sampled_from(COMMANDS),
    tokens=st.lists(TOKENS, max_size=5),
    where=st.integers(0, 5),
    bad=st.from_regex(r"--zz[a-z0-9-]{0,8}", fullmatch=True),
)
def test_usage_errors_are_one_line_and_exit_2(command, tokens, where, bad, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FR_AGENT_HOME", str(tmp_path))
    argv = [*command, *tokens[:where], bad, *tokens[where:]]
    code, out, err = run_main(argv, capsys)
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "--chip", "cpu"], "Missing argument 'model'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["batch", "jobs.yaml", "--concurrency", "0"], "Invalid value for '--concurrency'"),
    ],
)
def test_known_usage_errors(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FR_AGENT_HOME", str(tmp_path))
    code, _, err = run_main(argv, capsys)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_no_arguments_prints_the_help(capsys):
    code, out, _ = run_main([], capsys)
    assert code == 0 and "Usage" in out
