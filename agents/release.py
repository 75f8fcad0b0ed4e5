"""A release as the loop and `fr-agent publish` both make it: rendered from the recipe and the eval,
then its card linted. A card with findings is never uploaded."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from fr_agent.agents.card_lint import Finding, lint_file
from fr_agent.agents.publish import PublishResult, publish
from fr_agent.core.recipe import Recipe
from fr_agent.evals.report import EvalReport


class Release(BaseModel):
    rendered: PublishResult
    findings: list[Finding]


def render_release(
    recipe: Recipe, report: EvalReport, out_dir: Path, *, run_id: str, chip_description: str, license: str
) -> Release:
    rendered = publish(recipe, report, out_dir, run_id=run_id, chip_description=chip_description, license=license)
    return Release(rendered=rendered, findings=lint_file(rendered.out_dir / "README.md"))
