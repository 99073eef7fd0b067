"""Reports of a finished run directory: report.html, report.md and junit.xml, all re-rendered from its files.

`write_reports` is what `harness report RUN_DIR` and the end of `harness run` call; it reads only the run
directory (verdict.json, the records, metadata.json, scenario.yaml, stages.json), so a report can be
rebuilt anywhere from a copied run directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.report._common import ComparisonRow
from harness.report._rundata import load_run
from harness.rundir import RunDirectory

# What the rest of the harness may use: these names and the terminal's modules (console, progress); the renderers and
# `_`-modules serve them. tests/test_architecture.py holds every import from outside the package to this list.
__all__ = ["REPORT_FILES", "ComparisonRow", "console", "progress", "render_comparison_html", "write_reports"]

REPORT_FILES = ("report.html", "report.md", "junit.xml")


def write_reports(run_dir: RunDirectory) -> list[Path]:
    """Render report.html, report.md and junit.xml into the run directory; returns their paths."""
    # The renderers (plotly above all) are imported on first use, so that starting a run stays fast.
    from harness.report.html import render_html
    from harness.report.junit import render_junit
    from harness.report.markdown import render_markdown

    data = load_run(run_dir)
    texts = {
        "report.html": render_html(data),
        "report.md": render_markdown(data),
        "junit.xml": render_junit(data.verdict, f"harness.{data.scenario_name}"),
    }
    return [run_dir.write_text(name, texts[name]) for name in REPORT_FILES]


def render_comparison_html(run_a: RunDirectory, run_b: RunDirectory, comparison: Sequence[ComparisonRow]) -> str:
    """Side-by-side HTML report of a baseline (run_a) and a candidate (run_b) and their compared metrics.

    `comparison` is a list of rows (metric, baseline, candidate, relative change, significant, regression);
    `harness.report.console.comparison_rows` turns an `analysis.compare.Comparison` into them.
    """
    from harness.report.html import comparison_html

    return comparison_html(run_a, run_b, comparison)
