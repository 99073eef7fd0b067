"""report.html: one self-contained page (plotly.js inlined once, no network at view time) for capacity reviews.

The verdict comes first (status badge and the objective table), then the plots on one time axis, the
autoscaling, capacity, saturation and stage tables, and the run's metadata. Whatever was not measured
says so, with the reason, instead of drawing an empty plot that would read as zero. The plots need the
`plots` extra (plotly); without it the page has everything else and names the command that installs it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from harness import extras
from harness.analysis.faults import fault_line
from harness.model import MachineInfo, ObjectiveResult, PercentileEstimate, RunMetadata, Status, Verdict
from harness.report._common import (
    STATUS_MEANING,
    ComparisonRow,
    fmt_bottleneck,
    fmt_bytes,
    fmt_ci,
    fmt_comparison_value,
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
    fmt_threshold,
    fmt_token_rate,
    request_figures,
    status_counts,
    streamed_figures,
)
from harness.report._rundata import RunData, load_run
from harness.rundir import RunDirectory

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from harness.report._figures import Plot

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
:root { --pass: #2b8a3e; --warn: #e67700; --fail: #c92a2a; --inconclusive: #5f3dc4; --muted: #6c757d; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0;
       color: #212529; background: #f8f9fa; line-height: 1.45; }
header { background: #fff; border-bottom: 1px solid #dee2e6; padding: 1.2rem 2rem; }
header h1 { margin: 0 0 .3rem 0; font-size: 1.5rem; }
nav { padding: .4rem 2rem; background: #fff; border-bottom: 1px solid #dee2e6; font-size: .9rem; }
nav a { margin-right: 1rem; color: #1c7ed6; text-decoration: none; }
main { padding: 1rem 2rem 3rem 2rem; max-width: 1500px; }
section { background: #fff; border: 1px solid #dee2e6; border-radius: 6px; padding: 1rem 1.4rem;
          margin: 1rem 0; }
h2 { font-size: 1.2rem; margin: .2rem 0 .8rem 0; }
h3 { font-size: 1.02rem; margin: 1rem 0 .4rem 0; }
.badge { display: inline-block; padding: .25rem .8rem; border-radius: 4px; color: #fff; font-weight: 700;
         letter-spacing: .04em; font-size: 1.05rem; }
.badge.small { font-size: .78rem; padding: .08rem .45rem; }
.PASS { background: var(--pass); } .WARN { background: var(--warn); }
.FAIL { background: var(--fail); } .INCONCLUSIVE { background: var(--inconclusive); }
.summary { margin: .6rem 0 0 0; color: #343a40; }
.counts span { margin-right: .8rem; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; margin: .3rem 0 .6rem 0; }
table.kv { width: auto; min-width: 24rem; }
th, td { text-align: left; padding: .35rem .55rem; border-bottom: 1px solid #e9ecef; vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .ci { display: block; color: #868e96; font-size: .78rem; }
#stages table { font-size: .84rem; } #stages th, #stages td { padding: .35rem .4rem; }
#stages td:last-child { min-width: 10rem; overflow-wrap: anywhere; } .nowrap { white-space: nowrap; }
tr.row-FAIL td { background: #fff5f5; } tr.row-WARN td { background: #fff9db; }
tr.row-INCONCLUSIVE td { background: #f3f0ff; } tr.regression td { background: #fff5f5; }
.not-measured { border-left: 4px solid var(--muted); background: #f1f3f5; padding: .6rem .9rem; margin: .4rem 0;
                color: #495057; }
.note { border-left: 4px solid var(--pass); background: #ebfbee; padding: .6rem .9rem; margin: .4rem 0; }
.warnings li { margin: .2rem 0; }
.caption { color: #495057; font-size: .86rem; margin: .2rem 0 .6rem 0; }
.plot { min-height: 200px; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2rem 1.2rem; font-size: .9rem; }
dl.meta dt { font-weight: 600; color: #495057; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
pre { background: #f8f9fa; border: 1px solid #e9ecef; padding: .8rem; overflow-x: auto; font-size: .82rem; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.muted { color: var(--muted); }
footer { color: var(--muted); font-size: .8rem; padding: 0 2rem 2rem 2rem; }
"""


class Markup(str):
    """Text that is already HTML (escaped or built here); table cells of this type are not escaped again."""


class NumericMarkup(Markup):
    """Markup of a number, right-aligned in tables."""


def _e(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value))


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    css_id: str = "",
    row_classes: Sequence[str] = (),
    key_value: bool = False,
) -> Markup:
    """An HTML table in a horizontally scrolling wrapper; numeric-looking cells are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cls = row_classes[index] if index < len(row_classes) else ""
        cells = "".join(f"<td{_cell_class(cell)}>{_e(cell)}</td>" for cell in row)
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    id_attr = f' id="{css_id}"' if css_id else ""
    class_attr = ' class="kv"' if key_value else ""
    return Markup(
        f'<div class="table-wrap"><table{id_attr}{class_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _cell_class(cell: Any) -> str:
    text = str(cell)
    if isinstance(cell, NumericMarkup):
        return ' class="num"'
    numeric = (text == "n/a" or (bool(text) and (text[0].isdigit() or text[0] in "-≤≥["))) and not isinstance(
        cell, Markup
    )
    return ' class="num"' if numeric and len(text) < 40 else ""


def _estimate_cell(estimate: PercentileEstimate | None) -> NumericMarkup:
    """A percentile in ms with its confidence interval on a second, smaller line."""
    if estimate is None or estimate.value_s is None:
        return NumericMarkup("n/a")
    value, _, ci = fmt_estimate_ms(estimate).partition(" [")
    return NumericMarkup(f'{_e(value)}<span class="ci">[{_e(ci)}</span>')


def _badge(status: Status, small: bool = False) -> Markup:
    size = " small" if small else ""
    return Markup(f'<span class="badge {status.value}{size}">{status.value}</span>')


def _not_measured(reason: str) -> Markup:
    return Markup(f'<div class="not-measured"><strong>Not measured:</strong> {_e(reason)}</div>')


def _section(css_id: str, title: str, *parts: str) -> str:
    return f'<section id="{css_id}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


@cache
def _plotly_js() -> str:
    # plotly.min.js from the installed plotly package, so the page needs no network when viewed.
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _figure_html(figure: go.Figure, div_id: str) -> str:
    import plotly.io as pio

    return str(
        pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=_PLOT_CONFIG, validate=True)
    )


def _plot_section(plot: Plot) -> str:
    parts = [f'<p class="caption">{_e(plot.caption)}</p>']
    if plot.figure is not None:
        parts.append(f'<div class="plot">{_figure_html(plot.figure, plot.id)}</div>')
    elif plot.note is not None:
        parts.append(f'<div class="note">{_e(plot.note)}</div>')
    else:
        parts.append(_not_measured(plot.missing or "no data"))
    return _section(f"section-{plot.id}", plot.title, *parts)


def _plots_not_drawn(css_id: str) -> str:
    """The section standing for the plots when plotly is not installed: what it takes to draw them."""
    reason = extras.missing("plots", "drawing the plots")
    return _section(css_id, "Plots (not drawn)", f'<div class="not-measured">{_e(reason)}</div>')


def _page(title: str, header: str, nav: Sequence[tuple[str, str]], body: Sequence[str], *, plots: bool) -> str:
    links = "".join(f'<a href="#{_e(anchor)}">{_e(label)}</a>' for anchor, label in nav)
    script = f'<script type="text/javascript">{_plotly_js()}</script>' if plots else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style>{script}"
        f"</head><body><header>{header}</header><nav>{links}</nav><main>{''.join(body)}</main>"
        "<footer>Rendered by harness from the run directory alone (harness report RUN_DIR re-renders it).</footer>"
        "</body></html>\n"
    )


# --------------------------------------------------------------------------- verdict


def _objective_rows(objectives: Sequence[ObjectiveResult]) -> tuple[list[list[Any]], list[str]]:
    rows = [
        [
            r.objective,
            fmt_stage(r),
            _badge(r.status, small=True),
            fmt_metric_value(r.metric, r.measured),
            fmt_threshold(r),
            fmt_ci(r),
            r.reason,
        ]
        for r in objectives
    ]
    return rows, [f"row-{r.status.value}" for r in objectives]


def verdict_table(verdict: Verdict, css_id: str = "verdict-table") -> str:
    """The objective results as an HTML table (or a note when there are no objectives)."""
    if not verdict.objectives:
        return str(_not_measured("no objectives were given, so nothing was judged"))
    rows, classes = _objective_rows(verdict.objectives)
    return _table(
        ["Objective", "Stage", "Status", "Measured", "Threshold", "CI", "Reason"],
        rows,
        css_id=css_id,
        row_classes=classes,
    )


def _header(data: RunData) -> str:
    verdict = data.verdict
    counts = status_counts(verdict.objectives)
    chips = "".join(f"<span>{_badge(status, small=True)} × {count}</span>" for status, count in counts.items())
    return (
        f"<h1>Load test report: {_e(data.scenario_name)}</h1>"
        f'<div class="muted">run {_e(data.run_id)}</div>'
        f'<p class="summary" id="overall-status">{_badge(verdict.status)} '
        f"exit code {verdict.exit_code}: {_e(STATUS_MEANING[verdict.status])}.</p>"
        f'<p class="counts">{chips}</p>'
    )


def _bottlenecks(verdict: Verdict) -> str:
    if not verdict.bottlenecks:
        return ""
    items = "".join(f"<li>{_e(fmt_bottleneck(b))}</li>" for b in verdict.bottlenecks)
    return f'<h3>Likely bottlenecks</h3><ul class="warnings">{items}</ul>'


def _warnings(warnings: Sequence[str]) -> str:
    if not warnings:
        return '<p class="muted">None.</p>'
    return '<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"


# --------------------------------------------------------------------------- autoscaling, capacity, saturation


def _autoscaling(data: RunData) -> str:
    verdict = data.verdict
    decisions = data.scale_decisions()
    if not verdict.autoscaling and not decisions:
        if data.autoscaling_enabled is False:
            return str(_not_measured("autoscaling was not enabled in this scenario"))
        if data.autoscaling_enabled is None:
            return str(_not_measured("the scenario is missing, so whether autoscaling ran is unknown"))
        return str(_not_measured("no load step and no scale decision during the run"))
    parts: list[str] = []
    if verdict.autoscaling:
        rows = [
            [
                step.stage,
                fmt_seconds(data.elapsed_s(step.step_at_s)),
                fmt_seconds(step.first_scale_up_decision_s),
                fmt_seconds(step.new_replicas_ready_s),
                fmt_seconds(step.p95_recovered_s),
                fmt_seconds(step.violation_s),
                f"{step.replicas_min} / {step.replicas_max} / {step.replicas_final}",
            ]
            for step in verdict.autoscaling
        ]
        parts.append("<h3>Load steps</h3>")
        parts.append(
            '<p class="caption">Times are seconds after the step (n/a: it did not happen within the stage).</p>'
        )
        parts.append(
            _table(
                [
                    "Step (stage)",
                    "At",
                    "First scale-up decision",
                    "New replicas ready",
                    "p95 recovered",
                    "p95 above objective",
                    "Ready replicas min / max / final",
                ],
                rows,
                css_id="autoscaling-table",
            )
        )
    parts.append("<h3>Scale decisions</h3>")
    if decisions:
        rows = [
            [
                fmt_seconds(data.elapsed_s(t_s)),
                f"{d.from_replicas} → {d.to_replicas}",
                d.limited_by or "",
                d.reason,
            ]
            for t_s, d in decisions
        ]
        parts.append(_table(["At", "Replicas", "Limited by", "Reason"], rows, css_id="scale-decisions"))
    else:
        parts.append('<p class="muted">The autoscaler made no scale decision.</p>')
    return "".join(parts)


def _capacity(data: RunData) -> str:
    plan = data.verdict.capacity
    if plan is None:
        target = data.scenario.capacity_target_peak_rps if data.scenario else None
        if target is None:
            return str(_not_measured("the scenario sets no capacity.target_peak_rps, so no plan was asked for"))
        why = next((w for w in data.verdict.warnings if w.startswith("no capacity plan")), None)
        reason = why or (data.verdict.saturation.reason if data.verdict.saturation else "no sustainable throughput")
        return str(_not_measured(f"no plan for {fmt_number(float(target))} rps: {reason}"))
    rows = [
        ["Target peak", fmt_rps(plan.target_peak_rps)],
        ["Headroom", fmt_percent(plan.headroom)],
        ["Sustainable per replica", fmt_rps(plan.per_replica_rps)],
        ["Replicas needed", str(plan.replicas_needed)],
        [
            "CPU request per replica",
            "n/a" if plan.cpu_request_cores is None else f"{fmt_number(plan.cpu_request_cores)} cores",
        ],
        ["Memory request per replica", fmt_bytes(plan.memory_request_bytes)],
        [
            "traffic.concurrency per replica",
            "n/a" if plan.concurrency_per_replica is None else str(plan.concurrency_per_replica),
        ],
        ["Monthly cost", "n/a" if plan.monthly_cost is None else f"{plan.monthly_cost:.2f}"],
    ]
    table = _table(["Figure", "Value"], rows, css_id="capacity-table", key_value=True)
    return table + f'<p class="caption">{_e(plan.reason)}</p>'


def _saturation(data: RunData) -> str:
    saturation = data.verdict.saturation
    if saturation is None:
        return str(_not_measured("saturation was not analysed for this run"))
    rows = [
        ["Maximum sustainable throughput", fmt_rps(saturation.max_sustainable_rps)],
        ["... per replica", fmt_rps(saturation.max_sustainable_rps_per_replica)],
        ["Limiting stage", saturation.limiting_stage or "n/a"],
        ["Latency knee", fmt_rps(saturation.knee_rps)],
        ["p95 at the knee", fmt_ms(saturation.knee_latency_s)],
        ["Scaling efficiency", fmt_percent(saturation.scaling_efficiency)],
    ]
    table = _table(["Figure", "Value"], rows, css_id="saturation-table", key_value=True)
    return table + f'<p class="caption">{_e(saturation.reason)}</p>'


# --------------------------------------------------------------------------- stages and metadata


def stages_table(verdict: Verdict, css_id: str = "stages-table") -> str:
    """Every stage's measurements as an HTML table."""
    if not verdict.stages:
        return str(_not_measured("no stage ran"))
    rows = []
    classes = []
    for s in verdict.stages:
        offered = (
            fmt_rps(s.offered_rps)
            if s.offered_rps is not None
            else f"{s.offered_users} users"
            if s.offered_users is not None
            else "n/a"
        )
        replicas = fmt_replicas(s.replicas_min, s.replicas_max)
        notes = [*s.invalid_reasons, *s.sample_shortfalls.values()]
        errors = Markup(
            "<br>".join(f'<span class="nowrap">{_e(kind)}: {count}</span>' for kind, count in sorted(s.errors.items()))
            or "none"
        )
        rows.append(
            [
                s.name if s.judged else f"{s.name} (not judged)",
                fmt_seconds(s.duration_s),
                offered,
                fmt_rps(s.achieved_rps),
                str(s.requests),
                f"{s.failures} ({fmt_percent(s.error_rate)})",
                errors,
                _estimate_cell(s.latency.get("p50")),
                _estimate_cell(s.latency.get("p95")),
                _estimate_cell(s.latency.get("p99")),
                str(s.dropped),
                replicas,
                "n/a" if s.loadgen_cpu_max_cores is None else f"{fmt_number(s.loadgen_cpu_max_cores, 3)} cores",
                "; ".join(notes) or ("valid" if s.judged else ""),
            ]
        )
        classes.append("row-INCONCLUSIVE" if s.invalid_reasons else "")
    return _table(
        [
            "Stage",
            "Duration",
            "Offered",
            "Achieved",
            "Requests",
            "Failures",
            "Errors by kind",
            "p50 [CI]",
            "p95 [CI]",
            "p99 [CI]",
            "Dropped",
            "Replicas",
            "Load-gen CPU max",
            "Validity",
        ],
        rows,
        css_id=css_id,
        row_classes=classes,
    )


def requests_table(verdict: Verdict, css_id: str = "requests-table") -> str:
    """Every named request's figures in every stage (empty when the scenario named none)."""
    rows = [
        [
            stage,
            name,
            str(own.requests),
            fmt_rps(own.achieved_rps),
            f"{own.failures} ({fmt_percent(own.error_rate)})",
            Markup("<br>".join(f"{_e(kind)}: {count}" for kind, count in sorted(own.errors.items())) or "none"),
            _estimate_cell(own.latency.get("p50")),
            _estimate_cell(own.latency.get("p95")),
            _estimate_cell(own.latency.get("p99")),
        ]
        for stage, name, own in request_figures(verdict.stages)
    ]
    if not rows:
        return ""
    headers = ["Stage", "Request", "Requests", "Achieved", "Failures", "Errors by kind", "p50 [CI]", "p95 [CI]"]
    return _table([*headers, "p99 [CI]"], rows, css_id=css_id)


def streams_table(verdict: Verdict, css_id: str = "streams-table") -> str:
    """Streamed answers' figures per stage, all requests together and per named request (empty when none streamed)."""
    rows = [
        [
            stage,
            name,
            str(own.streamed),
            *(_estimate_cell(estimates.get(key)) for estimates in (own.ttft, own.itl) for key in ("p50", "p95", "p99")),
            _estimate_cell(own.tpot.get("p50")),
            _estimate_cell(own.tpot.get("p99")),
            fmt_token_rate(own),
            f"{own.input_tokens} / {own.output_tokens}",
        ]
        for stage, name, own in streamed_figures(verdict.stages)
    ]
    if not rows:
        return ""
    figures = [f"{figure} {key}" for figure in ("TTFT", "ITL") for key in ("p50", "p95", "p99")]
    headers = ["Stage", "Request", "Streamed", *figures, "TPOT p50", "TPOT p99", "Output", "Tokens in / out"]
    return _table(headers, rows, css_id=css_id)


def _metadata(data: RunData) -> str:
    meta = data.metadata
    if meta is None or meta == RunMetadata():
        parts = [str(_not_measured(data.missing.get("metadata.json", "metadata.json is empty")))]
    else:
        machine = meta.machine or MachineInfo()
        items: list[tuple[str, object]] = [
            ("Run", meta.run_id),
            ("Scenario", meta.scenario),
            ("Target", meta.target),
            ("Started", meta.started_at),
            ("Ended", meta.ended_at),
            ("Interrupted", meta.interrupted),
            ("Error", meta.error),
            ("Harness version", meta.harness_version),
            ("Harness git commit", meta.git_commit),
            ("Service git commit", meta.service_git_commit),
            ("Python", meta.python),
            ("Host", machine.hostname),
            ("Platform", machine.platform),
            ("CPUs", machine.cpus),
            ("Memory", fmt_bytes(machine.memory_bytes) if machine.memory_bytes is not None else None),
            ("CPU placement", meta.cpu_placement.reason if meta.cpu_placement else None),
        ]
        rendered = "".join(
            f"<dt>{_e(k)}</dt><dd>{_e('n/a' if v is None else v)}</dd>"
            for k, v in items
            if k in ("Run", "Scenario") or v is not None
        )
        parts = [f'<dl class="meta">{rendered}</dl>']
        versions = meta.versions
        if versions:
            parts.append("<h3>Package versions</h3>")
            parts.append(
                _table(
                    ["Package", "Version"],
                    [[k, v or "not installed"] for k, v in versions.items()],
                    css_id="versions-table",
                    key_value=True,
                )
            )
    if data.scenario is not None:
        parts.append(f"<details><summary>scenario.yaml (as run)</summary><pre>{_e(data.scenario.text)}</pre></details>")
    else:
        parts.append(str(_not_measured(data.missing.get("scenario.yaml", "scenario.yaml is missing"))))
    return "".join(parts)


def _files(run_dir: RunDirectory) -> str:
    names = sorted(p.name for p in run_dir.path.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    names = sorted(set(names) | {"report.html", "report.md", "junit.xml"})
    items = "".join(f'<li><a href="{_e(name)}">{_e(name)}</a></li>' for name in names)
    return f"<ul>{items}</ul>"


def render_html(data: RunData) -> str:
    """The whole report.html of a loaded run directory (`load_run`), as one self-contained HTML document."""
    verdict = data.verdict
    drawn = extras.installed("plots")
    plots: list[Plot] = []
    if drawn:
        from harness.report._figures import all_plots

        plots = all_plots(data)
    plot_sections = [_plot_section(plot) for plot in plots] if drawn else [_plots_not_drawn("plots")]
    plot_links = [(f"section-{p.id}", p.title.split(" over time")[0].split(",")[0]) for p in plots]
    body = [
        _section(
            "verdict",
            "Verdict",
            verdict_table(verdict),
            _bottlenecks(verdict),
            f"<p>{_e(fmt_overhead(verdict.loadgen_overhead))}</p>",
        ),
        _section("warnings", f"Warnings ({len(verdict.warnings)})", _warnings(verdict.warnings)),
        *(
            [
                _section(
                    "faults",
                    "Faults",
                    "<ul>" + "".join(f"<li>{_e(fault_line(f))}</li>" for f in verdict.faults) + "</ul>",
                )
            ]
            if verdict.faults
            else []
        ),
        *plot_sections,
        _section("autoscaling", "Autoscaling", _autoscaling(data)),
        _section("capacity", "Capacity plan", _capacity(data)),
        _section("saturation", "Saturation", _saturation(data)),
        _section("stages", "Stages", stages_table(verdict)),
        *([_section("requests", "Requests", requests)] if (requests := requests_table(verdict)) else []),
        *([_section("streams", "Streamed tokens", streams)] if (streams := streams_table(verdict)) else []),
        _section("metadata", "Run metadata", _metadata(data)),
        _section("files", "Files in this run directory", _files(data.run_dir)),
    ]
    nav = [
        ("verdict", "Verdict"),
        ("warnings", "Warnings"),
        *(plot_links if drawn else [("plots", "Plots")]),
        ("autoscaling", "Autoscaling"),
        ("capacity", "Capacity"),
        ("saturation", "Saturation"),
        ("stages", "Stages"),
        ("metadata", "Metadata"),
    ]
    title = f"{verdict.status.value}: {data.scenario_name} ({data.run_id})"
    return _page(title, _header(data), nav, body, plots=drawn)


# --------------------------------------------------------------------------- comparison of two runs


def _overlay(runs: Sequence[tuple[str, RunData]], title: str, y_title: str, key: str) -> str:
    import plotly.graph_objects as go

    from harness.report._figures import PALETTE, TIME_AXIS_TITLE

    fig = go.Figure()
    drawn = 0
    for index, (label, data) in enumerate(runs):
        if not data.series:
            continue
        values = [getattr(p, key) for p in data.series]
        if key.endswith("_s"):
            values = [None if v is None else v * 1000.0 for v in values]
        fig.add_trace(
            go.Scatter(
                x=[p.elapsed_s + p.duration_s / 2 for p in data.series],
                y=values,
                mode="lines",
                name=f"{label} ({data.run_id})",
                line={"color": PALETTE[index]},
            )
        )
        drawn += 1
    plot_id = f"plot-compare-{key.replace('_', '-')}"
    if not drawn:
        return _section(f"section-{plot_id}", title, _not_measured("neither run recorded client results"))
    fig.update_xaxes(title_text=TIME_AXIS_TITLE)
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    fig.update_layout(
        template="plotly_white",
        height=380,
        margin={"l": 70, "r": 40, "t": 30, "b": 60},
        legend={"orientation": "h", "y": -0.2},
    )
    return _section(f"section-{plot_id}", title, f'<div class="plot">{_figure_html(fig, plot_id)}</div>')


def _run_column(label: str, data: RunData, index: int) -> str:
    meta = data.metadata or RunMetadata()
    return (
        f"<div><h3>{_e(label)}: {_e(data.run_id)}</h3>"
        f"<p>{_badge(data.verdict.status)} exit code {data.verdict.exit_code}</p>"
        f'<dl class="meta"><dt>Scenario</dt><dd>{_e(data.scenario_name)}</dd>'
        f"<dt>Git commit</dt><dd>{_e(meta.git_commit or 'n/a')}</dd>"
        f"<dt>Started</dt><dd>{_e(meta.started_at or 'n/a')}</dd></dl>"
        f"{verdict_table(data.verdict, css_id=f'verdict-table-{index}')}"
        f"{stages_table(data.verdict, css_id=f'stages-table-{index}')}</div>"
    )


def comparison_html(run_a: RunDirectory, run_b: RunDirectory, rows: Sequence[ComparisonRow]) -> str:
    """Side-by-side report of a baseline (run_a) and a candidate (run_b) with the compared metrics."""
    baseline, candidate = load_run(run_a), load_run(run_b)
    regressions = [r for r in rows if r.regression]
    status = Status.FAIL if regressions else Status.PASS
    header = (
        f"<h1>Comparison: {_e(baseline.scenario_name)}</h1>"
        f'<div class="muted">baseline {_e(baseline.run_id)} → candidate {_e(candidate.run_id)}</div>'
        f'<p class="summary" id="overall-status">{_badge(status)} '
        f"{len(regressions)} significant regression(s) among {len(rows)} compared metric(s).</p>"
    )
    table: str
    if rows:
        table = _table(
            ["Stage", "Metric", "Baseline", "Candidate", "Change", "Significant", "Regression", "Reason"],
            [
                [
                    r.stage or "",
                    r.metric,
                    fmt_comparison_value(r.metric, r.baseline),
                    fmt_comparison_value(r.metric, r.candidate),
                    "n/a" if r.relative_change is None else f"{r.relative_change * 100:+.1f}%",
                    "yes" if r.significant else "no",
                    "REGRESSION" if r.regression else "no",
                    r.reason,
                ]
                for r in rows
            ],
            css_id="comparison-table",
            row_classes=["regression" if r.regression else "" for r in rows],
        )
    else:
        table = str(_not_measured("the runs share no compared metric (no common judged stage)"))
    runs = [("baseline", baseline), ("candidate", candidate)]
    drawn = extras.installed("plots")
    overlays = (
        [
            _overlay(runs, "p95 latency over time", "p95 latency (ms)", "p95_s"),
            _overlay(runs, "Achieved throughput over time", "achieved (rps)", "achieved_rps"),
        ]
        if drawn
        else [_plots_not_drawn("plots")]
    )
    body = [
        _section("comparison", "Compared metrics", table),
        *overlays,
        _section(
            "runs",
            "The two runs side by side",
            '<div class="columns">'
            + _run_column("Baseline", baseline, 0)
            + _run_column("Candidate", candidate, 1)
            + "</div>",
        ),
    ]
    nav = [("comparison", "Compared metrics"), ("runs", "Runs")]
    return _page(f"Comparison {baseline.run_id} vs {candidate.run_id}", header, nav, body, plots=drawn)
