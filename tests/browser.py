"""Render a page in headless Chromium and report what it shows: a probe script, added to a copy of the page
(the page itself has no script), measures the laid-out elements and their computed styles, and
Chromium's --dump-dom hands the measurements back."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE = r"""
<script>
(() => {
  const q = (s, root = document) => Array.from(root.querySelectorAll(s));
  const box = e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
  const shown = e => { const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
                       return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none"; };
  const text = (e, s) => { const t = s ? e.querySelector(s) : e; return t ? t.innerText : null; };
  const out = {
    title: document.title,
    h1: q("h1").map(e => e.innerText),
    stages: q("svg.timeline rect.stage").map(e => ({stage: e.dataset.stage, ok: e.classList.contains("ok"),
      fill: getComputedStyle(e).fill, box: box(e), shown: shown(e)})),
    diagnosis_marks: q("svg.timeline .mark.diagnosis").filter(shown).length,
    fix_marks: q("svg.timeline .mark.fix").filter(shown).length,
    diagnoses: q(".card.diagnosis").map(e => ({title: text(e, "h3"), evidence: text(e, "pre.evidence"),
      shown: shown(e)})),
    tool_calls: q(".card.tool-call").map(e => ({title: text(e, "h3"),
      added: q("pre.diff .add", e).map(l => l.innerText),
      removed: q("pre.diff .del", e).map(l => l.innerText),
      added_bg: q("pre.diff .add", e).map(l => getComputedStyle(l).backgroundColor)[0] || null})),
    eval_rows: q("table.eval tr").map(r => q("th,td", r).map(c => c.innerText)),
    bars: q("svg.eval-chart rect.bar").map(e => ({metric: e.dataset.metric, box: box(e), shown: shown(e)})),
    threshold: q("svg.eval-chart line.threshold").map(box),
    batch_rows: q("table.batch tr").map(r => q("th,td", r).map(c => c.innerText)),
    sections: q("section.run").map(e => e.id),
    scripts: q("script").length - 1,
    external: q("[src],link[href]").map(e => e.getAttribute("src") || e.getAttribute("href")),
  };
  const pre = document.createElement("pre");
  pre.id = "fr-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return found


def render(page: Path, tmp_path: Path) -> dict:
    """What Chromium shows of `page`: the probe's measurements."""
    probed = tmp_path / f"probed-{page.name}"
    source = page.read_text(encoding="utf-8")
    assert source.count("</body>") == 1
    probed.write_text(source.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,2000",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="fr-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"chromium rendered no probe output: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))
