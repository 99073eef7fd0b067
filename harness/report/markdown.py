"""report.md: a short GitHub-flavoured Markdown summary of a run, sized for a pull-request comment.

Status first, then the objectives, stages, capacity plan and saturation tables, and the names of the
run directory's other files (report.html has the plots). Text that comes from the run (names, reasons,
warnings) is escaped, so it shows as itself and cannot inject HTML or Markdown into a pull request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from harness.analysis.faults import fault_line
from harness.model import Verdict
from harness.report._common import (
    STATUS_EMOJI,
    STATUS_MEANING,
    fmt_bottleneck,
    fmt_bytes,
    fmt_ci,
    fmt_estimate_ms,
    fmt_metric_value,
    fmt_ms,
    fmt_number,
    fmt_overhead,
    fmt_percent,
    fmt_replicas,
    fmt_rps,
    fmt_seconds,
    fmt_stage,
    fmt_stage_errors,
    fmt_threshold,
    fmt_token_rate,
    request_figures,
    streamed_figures,
)
from harness.report._rundata import RunData

_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Emphasis, code, links, strikethrough and escapes; `_` only where it could start or end emphasis.
_MARKUP = re.compile(r"[\\`*\[\]~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What starts a block at the beginning of a list item or heading: heading, list, setext underline.
_BLOCK_START = re.compile(r"^([0-9]*)([#+=.)-])")


def _text(value: object) -> str:
    """Text from the run shown as itself on one line: HTML as entities, Markdown markup backslash-escaped."""
    text = "".join(_HTML_ENTITIES.get(char, char) for char in " ".join(str(value).split()))
    text = _MARKUP.sub(lambda match: "\\" + match.group(0), text)
    return _BLOCK_START.sub(r"\1\\\2", text)


def _code(value: object) -> str:
    """A code span holding `value` literally, however many backticks it contains."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(value: object) -> str:
    # A pipe would end the cell and a newline the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _objectives(verdict: Verdict) -> list[str]:
    if not verdict.objectives:
        return ["_No objectives were given, so nothing was judged._"]
    return _table(
        ["Objective", "Stage", "Status", "Measured", "Threshold", "CI", "Reason"],
        (
            [
                _text(r.objective),
                _text(fmt_stage(r)),
                f"{STATUS_EMOJI[r.status]} {r.status.value}",
                fmt_metric_value(r.metric, r.measured),
                fmt_threshold(r),
                fmt_ci(r),
                _text(r.reason),
            ]
            for r in verdict.objectives
        ),
    )


def _bottlenecks(verdict: Verdict) -> list[str]:
    if not verdict.bottlenecks:
        return []
    return ["", "### Likely bottlenecks", "", *(f"- {_text(fmt_bottleneck(b))}" for b in verdict.bottlenecks)]


def _errors(verdict: Verdict) -> list[str]:
    lines = [f"- {_text(line)}" for stage in verdict.stages if (line := fmt_stage_errors(stage)) is not None]
    return ["", "### Errors", "", *lines] if lines else []


def _stages(verdict: Verdict) -> list[str]:
    if not verdict.stages:
        return ["_No stage ran._"]
    rows = []
    for s in verdict.stages:
        offered = fmt_rps(s.offered_rps) if s.offered_rps is not None else f"{s.offered_users} users"
        notes = [_text(note) for note in (*s.invalid_reasons, *s.sample_shortfalls.values())]
        rows.append(
            [
                _text(s.name) + ("" if s.judged else " (not judged)"),
                offered,
                fmt_rps(s.achieved_rps),
                s.requests,
                f"{s.failures} ({fmt_percent(s.error_rate)})",
                fmt_estimate_ms(s.latency.get("p50")),
                fmt_estimate_ms(s.latency.get("p95")),
                fmt_estimate_ms(s.latency.get("p99")),
                fmt_replicas(s.replicas_min, s.replicas_max),
                "; ".join(notes),
            ]
        )
    return _table(
        ["Stage", "Offered", "Achieved", "Requests", "Failures", "p50", "p95", "p99", "Replicas", "Notes"], rows
    )


def _requests(verdict: Verdict) -> list[str]:
    rows = request_figures(verdict.stages)
    if not rows:
        return []
    return [
        "",
        "### Requests",
        "",
        *_table(
            ["Stage", "Request", "Requests", "Achieved", "Failures", "p50", "p95", "p99"],
            (
                [
                    _text(stage),
                    _text(name),
                    own.requests,
                    fmt_rps(own.achieved_rps),
                    f"{own.failures} ({fmt_percent(own.error_rate)})",
                    fmt_estimate_ms(own.latency.get("p50")),
                    fmt_estimate_ms(own.latency.get("p95")),
                    fmt_estimate_ms(own.latency.get("p99")),
                ]
                for stage, name, own in rows
            ),
        ),
    ]


def _streams(verdict: Verdict) -> list[str]:
    rows = streamed_figures(verdict.stages)
    if not rows:
        return []
    headers = ["Stage", "Request", "Streamed", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "TPOT p50", "Output"]
    return [
        "",
        "### Streamed tokens",
        "",
        *_table(
            headers,
            (
                [
                    _text(stage),
                    _text(name),
                    own.streamed,
                    fmt_estimate_ms(own.ttft.get("p50")),
                    fmt_estimate_ms(own.ttft.get("p99")),
                    fmt_estimate_ms(own.itl.get("p50")),
                    fmt_estimate_ms(own.itl.get("p99")),
                    fmt_estimate_ms(own.tpot.get("p50")),
                    fmt_token_rate(own),
                ]
                for stage, name, own in rows
            ),
        ),
    ]


def _capacity(data: RunData) -> list[str]:
    plan = data.verdict.capacity
    if plan is None:
        why = next((w for w in data.verdict.warnings if w.startswith("no capacity plan")), None)
        return [f"_Not computed: {_text(why) if why else 'the scenario sets no capacity.target_peak_rps'}._"]
    cpu = "n/a" if plan.cpu_request_cores is None else f"{fmt_number(plan.cpu_request_cores)} cores"
    cost = "n/a" if plan.monthly_cost is None else f"{plan.monthly_cost:.2f}"
    concurrency = "n/a" if plan.concurrency_per_replica is None else str(plan.concurrency_per_replica)
    return [
        *_table(
            [
                "Target peak",
                "Headroom",
                "Per replica",
                "Replicas",
                "CPU request",
                "Memory request",
                "Concurrency",
                "Monthly cost",
            ],
            [
                [
                    fmt_rps(plan.target_peak_rps),
                    fmt_percent(plan.headroom),
                    fmt_rps(plan.per_replica_rps),
                    plan.replicas_needed,
                    cpu,
                    fmt_bytes(plan.memory_request_bytes),
                    concurrency,
                    cost,
                ]
            ],
        ),
        "",
        _text(plan.reason),
    ]


def _saturation(data: RunData) -> list[str]:
    saturation = data.verdict.saturation
    if saturation is None:
        return ["_Not analysed._"]
    return [
        *_table(
            ["Max sustainable", "Per replica", "Limiting stage", "Knee", "p95 at knee"],
            [
                [
                    fmt_rps(saturation.max_sustainable_rps),
                    fmt_rps(saturation.max_sustainable_rps_per_replica),
                    _text(saturation.limiting_stage or "n/a"),
                    fmt_rps(saturation.knee_rps),
                    fmt_ms(saturation.knee_latency_s),
                ]
            ],
        ),
        "",
        _text(saturation.reason),
    ]


def _autoscaling(data: RunData) -> list[str]:
    steps = data.verdict.autoscaling
    if not steps:
        return []
    return [
        "",
        "### Autoscaling",
        "",
        *_table(
            [
                "Step",
                "First scale-up decision",
                "New replicas ready",
                "p95 recovered",
                "p95 above objective",
                "Replicas",
            ],
            (
                [
                    _text(step.stage),
                    fmt_seconds(step.first_scale_up_decision_s),
                    fmt_seconds(step.new_replicas_ready_s),
                    fmt_seconds(step.p95_recovered_s),
                    fmt_seconds(step.violation_s),
                    f"{step.replicas_min}→{step.replicas_final} (max {step.replicas_max})",
                ]
                for step in steps
            ),
        ),
    ]


def render_markdown(data: RunData) -> str:
    """The report.md summary of a loaded run directory (`load_run`)."""
    verdict = data.verdict
    lines = [
        f"## {STATUS_EMOJI[verdict.status]} {verdict.status.value}: {_code(data.scenario_name)}",
        "",
        f"Run {_code(data.run_id)}, exit code {verdict.exit_code}: {STATUS_MEANING[verdict.status]}.",
        "",
        _text(fmt_overhead(verdict.loadgen_overhead)) + ".",
        "",
        "### Objectives",
        "",
        *_objectives(verdict),
        *_errors(verdict),
        *_bottlenecks(verdict),
        "",
        "### Stages",
        "",
        *_stages(verdict),
        *_requests(verdict),
        *_streams(verdict),
        "",
        "### Capacity plan",
        "",
        *_capacity(data),
        "",
        "### Saturation",
        "",
        *_saturation(data),
        *_autoscaling(data),
    ]
    if verdict.faults:
        lines += ["", "### Faults", "", *(f"- {_text(fault_line(f))}" for f in verdict.faults)]
    if verdict.warnings:
        lines += ["", "### Warnings", "", *(f"- {_text(w)}" for w in verdict.warnings)]
    present = sorted(p.name for p in data.run_dir.path.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    others = sorted((set(present) | {"report.html", "junit.xml"}) - {"report.md"})
    lines += ["", "Files: " + ", ".join(_code(name) for name in others) + " (plots in `report.html`).", ""]
    return "\n".join(lines)
