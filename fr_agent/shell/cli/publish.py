"""CLI for releases: `publish RUN [--repo-id ID | --to DIR] [--dry-run] [--public]` and `card lint FILE`.
Registered on the main app by `register`.

`publish` re-renders the run's release folder from its checkpointed recipe and its eval, lints the
card, and only a clean card goes anywhere. HF_TOKEN is read from the environment by the upload; no
command here prints it or writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from fr_agent.agents.card_lint import lint_file
from fr_agent.agents.upload import copy_to_dir, upload_to_hub
from fr_agent.core.errors import FrAgentError, RunFailed
from fr_agent.shell.cli.common import ConfigOpt, HomeOpt, JsonOpt, console, err_console, settings_from
from fr_agent.shell.runs import Run

card_app = typer.Typer(no_args_is_help=True, help="Model cards: lint one before it is published.")


class CardRejected(RunFailed):
    """The linter found something a user must not see; nothing was published."""


def print_findings(findings, source: str, outcome: str = "") -> None:
    for finding in findings:
        err_console.print(f"[red]card:[/red] {escape(str(finding))}", soft_wrap=True)
    err_console.print(f"{len(findings)} finding(s) in {escape(source)}{outcome}")


def print_plan(result) -> None:
    plan = result.plan
    for label, names in (("add", plan.added), ("change", plan.changed), ("delete", plan.deleted)):
        for name in names:
            console.print(f"  {label:<6} {escape(name)}")
    console.print(f"  {len(plan.unchanged)} file(s) unchanged")


def publish_command(
    run: Annotated[str, typer.Argument(help="run id (or a prefix), or 'latest'")],
    repo_id: Annotated[
        Optional[str],
        typer.Option(
            "--repo-id",
            help="upload to this Hugging Face model repo (HF_TOKEN from the environment; HF_ENDPOINT honoured)",
        ),
    ] = None,
    to: Annotated[Optional[Path], typer.Option("--to", help="copy the release to this local directory")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would change; send and write nothing")] = False,
    public: Annotated[bool, typer.Option("--public", help="create the hub repo public (default: private)")] = False,
    license: Annotated[Optional[str], typer.Option("--license", help="licence id for the card [the model's]")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Render RUN's release (model card, Dockerfile, serve.yaml, eval), lint the card, then upload or copy it."""
    if repo_id and to:
        raise FrAgentError("pass either --repo-id or --to, not both")
    if repo_id is not None and (repo_id.count("/") > 1 or not repo_id.strip("/")):
        raise FrAgentError(f"--repo-id {repo_id!r}: expected NAME or OWNER/NAME")
    settings = settings_from(config, home)
    run = Run.open(settings, run)
    release = run.release(license)
    findings, folder = release.findings, release.rendered.out_dir
    if findings:
        if as_json:
            print(json.dumps({"published": False, "findings": [f.model_dump() for f in findings]}, indent=2))
        print_findings(findings, str(folder / "README.md"), ": nothing published")
        raise CardRejected("the card did not pass the linter")
    result = None
    if repo_id:
        result = upload_to_hub(
            folder, repo_id, private=not public, dry_run=dry_run, message=f"fr-agent publish {run.id}"
        )
    elif to:
        result = copy_to_dir(folder, to.absolute(), dry_run=dry_run)
    if result and not result.dry_run:
        run.record(
            "publish",
            out_dir=str(folder),
            files=[str(f) for f in release.rendered.files],
            target=result.plan.target,
            commit=result.commit,
            changed=result.plan.has_changes,
        )
    if as_json:
        print(
            json.dumps(
                {
                    "published": bool(result and not result.dry_run),
                    "folder": str(folder),
                    "findings": [],
                    **({"upload": result.model_dump(), "has_changes": result.plan.has_changes} if result else {}),
                },
                indent=2,
            )
        )
        return
    console.print(f"release folder: {folder} (card lint: clean)")
    if result is None:
        console.print("nothing uploaded: pass --repo-id ID or --to DIR")
        return
    plan, hub = result.plan, result.plan.kind == "hub"
    new = "" if plan.exists else (f" (new, {'public' if public else 'private'})" if hub else " (new)")
    console.print(f"{'dry run: ' if result.dry_run else ''}{escape(plan.target)}{new}")
    print_plan(result)
    if not plan.has_changes:
        console.print(
            ("no changes: no commit" + (f" (head {result.commit})" if result.commit else ""))
            if hub
            else "no changes: nothing copied"
        )
    elif result.dry_run:
        console.print("would make one commit" if hub else "would copy the changes")
    else:
        console.print(f"committed {result.commit}" if hub else f"copied to {escape(plan.target)}")


def lint_command(
    file: Annotated[Path, typer.Argument(help="a model card (README.md)")],
    as_json: JsonOpt = False,
) -> None:
    """Check a model card: metadata, sections, placeholders, scores, gate. Exit 1 on any finding."""
    if not file.is_file():
        raise FrAgentError(f"no such card: {file}")
    try:
        findings = lint_file(file)
    except UnicodeDecodeError:
        raise FrAgentError(f"{file}: not a UTF-8 text file") from None
    if as_json:
        print(json.dumps([f.model_dump() for f in findings], indent=2))
    elif findings:
        print_findings(findings, str(file))
    else:
        console.print(f"{file}: clean")
    raise typer.Exit(1 if findings else 0)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)
    card_app.command("lint")(lint_command)
    app.add_typer(card_app, name="card")
