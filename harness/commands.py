"""The CLI's verbs: each runs one command (a run, a re-render, a comparison, a sweep, a build) and says what
happened on the terminal; `cli.py` parses the arguments and calls them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import Scenario
from harness.errors import ReportError
from harness.exit_codes import ExitCode
from harness.model import ClientInterval, Status, Verdict, to_json_dict
from harness.run import Run
from harness.rundir import RunDirectory, write_atomically


def _console() -> Any:
    import sys

    from rich.console import Console

    # Piped output (CI logs) gets a wide table rather than rich's 80-column default.
    return Console() if sys.stdout.isatty() else Console(width=160)


def exit_code_for(verdict: Verdict | None, exit_code: int, *, fail_on_warn: bool) -> int:
    """The run's exit code, with `--fail-on warn` turning a WARN verdict into a failure (1)."""
    if fail_on_warn and verdict is not None and verdict.status is Status.WARN and exit_code == ExitCode.OK:
        return ExitCode.FAIL
    return exit_code


def run_scenario(scenario: Scenario, *, json_progress: bool = False, fail_on_warn: bool = False) -> int:
    """`harness run`: run one scenario, print its verdict table, return the exit code."""
    from harness.report.progress import ProgressReporter

    reporter = ProgressReporter(mode="json" if json_progress else None)
    run = Run(scenario, progress=reporter.update, log=lambda message: reporter.log(message))
    try:
        outcome = run.execute()
    finally:
        reporter.close()
    exit_code = exit_code_for(outcome.verdict, outcome.exit_code, fail_on_warn=fail_on_warn)
    if json_progress:
        status = outcome.verdict.status.value if outcome.verdict else None
        result = {"type": "result", "status": status, "exit_code": exit_code, "run_dir": str(outcome.run_dir)}
        print(json.dumps(result), flush=True)
        return exit_code
    from harness.report.console import print_verdict

    console = _console()
    if outcome.verdict is not None:
        print_verdict(outcome.verdict, console)
        if exit_code != outcome.exit_code:
            console.print(f"--fail-on warn: the WARN verdict exits {exit_code}")
    console.print(f"run directory: {outcome.run_dir}")
    if outcome.verdict is not None and (note := missing_plots_note()) is not None:
        console.print(note)
    return exit_code


def missing_plots_note() -> str | None:
    """What the terminal says when report.html was written without its plots (the plots extra is missing)."""
    from harness import extras

    return None if extras.installed("plots") else f"report.html has no plots: {extras.missing('plots', 'drawing them')}"


def rerender(run_dir_path: Path) -> list[Path]:
    """`harness report`: recompute the verdict from the raw records and re-render every report."""
    from harness.conclude import conclude_run
    from harness.report import write_reports

    if not run_dir_path.is_dir():
        raise ReportError(f"{run_dir_path}: not a run directory")
    run_dir = RunDirectory(run_dir_path)
    conclude_run(run_dir)
    return [run_dir.file("verdict.json"), *write_reports(run_dir)]


def compare_runs(
    baseline_path: Path, candidate_path: Path, *, alpha: float, min_effect: float, html_out: Path | None
) -> int:
    """`harness compare`: significant regressions between two runs; 1 when any, else 0; a ReportError when
    the runs share no judged stage (no comparison is not "no regression")."""
    from harness.analysis.compare import compare, summarize_run
    from harness.report import render_comparison_html
    from harness.report.console import comparison_rows, print_comparison

    summaries = []
    run_dirs = []
    for path in (baseline_path, candidate_path):
        if not path.is_dir():
            raise ReportError(f"{path}: not a run directory")
        run_dir = RunDirectory(path)
        run_dirs.append(run_dir)
        summaries.append(summarize_run(run_dir.read_stages(), run_dir.read_records(ClientInterval)))
    if not set(summaries[0].stages) & set(summaries[1].stages):
        baseline_stages, candidate_stages = (", ".join(summary.stages) or "none" for summary in summaries)
        raise ReportError(
            f"{baseline_path} and {candidate_path} share no judged stage, so nothing can be compared "
            f"(baseline: {baseline_stages}; candidate: {candidate_stages})",
            hint="compare runs of the same scenario",
        )
    comparison = compare(summaries[0], summaries[1], alpha=alpha, min_effect=min_effect)
    print_comparison(comparison, _console())
    if html_out is not None:
        write_atomically(html_out, render_comparison_html(run_dirs[0], run_dirs[1], comparison_rows(comparison)))
    return ExitCode.FAIL if comparison.regressed else ExitCode.OK


def sweep_scenario(
    path: Path,
    overrides: dict[str, Any],
    *,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    probe_s: float | None,
    warmup_s: float | None = None,
    replica_counts: tuple[int, ...] = (),
    json_lines: bool = False,
) -> int:
    """`harness sweep`: bracket-then-bisect search for the maximum sustainable arrival rate; with `json_lines`
    every line is a JSON object: {"type": "log" | "probe" | "result", ...}."""
    from harness.config import load_scenario
    from harness.sweep import WARMUP_S, run_sweep

    def emit(kind: str, fields: dict[str, Any]) -> None:
        print(json.dumps({"type": kind, **fields}), flush=True)

    summary: dict[str, Any] = {}
    code = run_sweep(
        load_scenario(path, overrides),
        initial_rps=initial_rps,
        max_rps=max_rps,
        tolerance=tolerance,
        min_probe_s=probe_s,
        warmup_s=WARMUP_S if warmup_s is None else warmup_s,
        console=_JsonLog(emit) if json_lines else _console(),
        replica_counts=replica_counts,
        on_probe=(lambda record: emit("probe", to_json_dict(record))) if json_lines else lambda record: None,
        on_result=lambda result: summary.update(to_json_dict(result)),
    )
    if json_lines:
        emit("result", {**summary, "exit_code": code})
    return code


class _JsonLog:
    """A console for machines: every line printed becomes {"type": "log", "message": ...}."""

    def __init__(self, emit: Any) -> None:
        self._emit = emit

    def print(self, message: str) -> None:
        self._emit("log", {"message": str(message)})


def build_image(
    path: Path, *, base_image: str | None, ca_bundle: Path | None, tag: str | None, platform: str | None = None
) -> str:
    """`harness build`: bentoml build plus containerisation; returns the image tag and figures."""
    from harness.build import build_service_image
    from harness.config import load_scenario

    scenario = load_scenario(path, {"build.platform": platform} if platform else None)
    image = build_service_image(
        scenario.service,
        base_image or scenario.build.base_image,
        ca_bundle or scenario.build.ca_bundle,
        tag,
        platform=scenario.build.platform,
    )
    return f"{image.tag} ({image.size_bytes / 2**20:.0f} MiB, built in {image.build_s:.0f} s)"


def rbac_manifests(
    path: Path, overrides: dict[str, Any], *, namespace: str | None, name: str, service_account: str | None
) -> str:
    """`harness rbac`: the narrowest Role a run of the scenario needs in its namespace (and a RoleBinding of it to
    `service_account`), as YAML, each right's reason in a comment above it."""
    import yaml

    from harness.config import load_scenario
    from harness.errors import ConfigError
    from harness.targets.kubernetes_access import rights_needed, role_manifests

    scenario = load_scenario(path, overrides)
    if scenario.target.kind != "kubernetes":
        raise ConfigError(f"{path}: target.kind is '{scenario.target.kind}'; a Role is for target.kind kubernetes")
    where = namespace or scenario.target.kubernetes.namespace
    rights = rights_needed(scenario)
    reasons = [
        f"#   {' '.join(right.verbs)} {right.shown}: {right.why}" + ("" if right.required else " (optional)")
        for right in rights
    ]
    header = [f"# The rights a run of {path.name} needs in namespace {where}, and why:", *reasons]
    manifests = role_manifests(rights, where, name, service_account)
    return "\n".join(header) + "\n" + yaml.safe_dump_all(manifests, sort_keys=False)
