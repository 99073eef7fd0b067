"""The HTML report's plots (plotly figures), each built from RunData or replaced by the reason it is absent.

A plot is never drawn from data that is not there: a missing series becomes a `Plot` with `missing`
set (shown as "not measured: reason"), and a series with gaps is drawn with gaps, not joined across them.
Times are seconds since the run's start on every time axis, so the plots line up.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.analysis.timeline import IntervalPoint
from harness.model import ObjectiveResult, ServerSample, StageResult, percentile_key
from harness.objectives import latency_percentile
from harness.report._common import fmt_number
from harness.report._rundata import RunData

PERCENTILE_COLOURS = {"p50": "#2a9d8f", "p95": "#e76f51", "p99": "#9b2226"}
LOAD_COLOUR = "#6c757d"
ACHIEVED_COLOUR = "#264653"
ERROR_COLOUR = "#d62828"
READY_COLOUR = "#1d3557"
DESIRED_COLOUR = "#a8dadc"
PALETTE = ("#1d3557", "#e76f51", "#2a9d8f", "#f4a261", "#8338ec", "#3a86ff", "#ff006e", "#6a994e")
TIME_AXIS_TITLE = "time since run start (s)"
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 70, "r": 70, "t": 40, "b": 60},
    "legend": {"orientation": "h", "y": -0.18, "x": 0.0},
    "hovermode": "x unified",
}


@dataclass(frozen=True)
class Plot:
    """One plot of the report: a figure, or why there is none (`missing`), or a measured fact in words (`note`)."""

    id: str
    title: str
    caption: str
    figure: go.Figure | None = None
    missing: str | None = None
    note: str | None = None


def _ms(value_s: float | None) -> float | None:
    return None if value_s is None else value_s * 1000.0


def _with_gaps(
    xs: Sequence[float], ys: Sequence[float | None], spacing_s: float
) -> tuple[list[float | None], list[float | None]]:
    """Insert a break wherever consecutive points are further apart than 1.5 spacings, so lines show the gap."""
    gx: list[float | None] = []
    gy: list[float | None] = []
    for index, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if index and x - xs[index - 1] > 1.5 * spacing_s:
            gx.append(None)
            gy.append(None)
        gx.append(x)
        gy.append(y)
    return gx, gy


def _midpoints(series: Sequence[IntervalPoint]) -> list[float]:
    return [p.elapsed_s + p.duration_s / 2.0 for p in series]


def _add_stage_regions(fig: go.Figure, data: RunData, rows: int) -> None:
    """Shade every other stage and name each stage above the top plot, on every row."""
    for index, window in enumerate(data.windows):
        x0, x1 = data.elapsed_s(window.start_s), data.elapsed_s(window.end_s)
        fill = "#adb5bd" if index % 2 else "#dee2e6"
        if rows > 1:
            fig.add_vrect(x0=x0, x1=x1, fillcolor=fill, opacity=0.18, line_width=0, layer="below", row="all", col=1)
        else:
            fig.add_vrect(x0=x0, x1=x1, fillcolor=fill, opacity=0.18, line_width=0, layer="below")
        label = window.name if window.judged else f"{window.name} (not judged)"
        fig.add_annotation(
            x=(x0 + x1) / 2.0,
            y=1.0,
            xref="x",
            yref="paper",
            text=label,
            showarrow=False,
            yanchor="bottom",
            font={"size": 11, "color": "#495057"},
        )


def _latency_objectives_ms(objectives: Sequence[ObjectiveResult]) -> dict[str, float]:
    """Latency objective thresholds by percentile key ("p95" -> 150.0), one per metric."""
    lines: dict[str, float] = {}
    for result in objectives:
        q = latency_percentile(result.metric)
        if q is not None:
            lines.setdefault(percentile_key(q), result.threshold)
    return lines


# --------------------------------------------------------------------------- timeline: latency and replicas


def latency_timeline(data: RunData) -> Plot:
    """Latency percentiles over time with the offered load (secondary axis) and replicas with scale decisions."""
    title = "Latency, load and replicas over time"
    caption = (
        f"Client-side latency of successful requests per {fmt_number(data.bucket_s)} s bucket, all load-generator "
        "processes merged; dashed lines are the latency objectives. The lower panel shows ready and desired "
        "replicas; triangles mark the autoscaler's scale decisions."
    )
    if not data.series:
        reason = data.missing.get("client_intervals.jsonl", "no client results were recorded")
        return Plot("plot-latency", title, caption, missing=reason)
    series = data.series
    with_replicas = bool(data.counts)
    rows = 2 if with_replicas else 1
    specs: list[list[dict[str, Any]]] = [[{"secondary_y": True}]] + ([[{}]] if with_replicas else [])
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        specs=specs,
        row_heights=[0.64, 0.36] if with_replicas else None,
        vertical_spacing=0.08,
    )
    xs = _midpoints(series)
    for key, colour in PERCENTILE_COLOURS.items():
        ys = [_ms(getattr(p, f"{key}_s")) for p in series]
        gx, gy = _with_gaps(xs, ys, data.bucket_s)
        fig.add_trace(
            go.Scatter(x=gx, y=gy, mode="lines", name=f"{key} latency (ms)", line={"color": colour, "width": 1.6}),
            row=1,
            col=1,
            secondary_y=False,
        )
    # Open-model buckets show their arrival rate, closed-model buckets their users: each stage's own load.
    load_axis = []
    for name, values, dash in (
        ("offered load (rps)", [p.offered_rps for p in series], "dot"),
        ("users (closed model)", [float(p.users) if p.offered_rps is None else None for p in series], "dashdot"),
    ):
        if all(v is None for v in values):
            continue
        load_axis.append(name.split(" (")[0] if "users" in name else "offered rps")
        gx, gy = _with_gaps(xs, values, data.bucket_s)
        fig.add_trace(
            go.Scatter(x=gx, y=gy, mode="lines", name=name, line={"color": LOAD_COLOUR, "dash": dash, "shape": "hv"}),
            row=1,
            col=1,
            secondary_y=True,
        )
    for key, threshold_ms in _latency_objectives_ms(data.verdict.objectives).items():
        fig.add_hline(
            y=threshold_ms,
            line={"color": PERCENTILE_COLOURS.get(key, ERROR_COLOUR), "dash": "dash", "width": 1},
            annotation_text=f"{key} objective {fmt_number(threshold_ms)} ms",
            annotation_position="top left",
            row=1,
            col=1,
        )
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero", row=1, col=1, secondary_y=False)
    fig.update_yaxes(
        title_text=" / ".join(load_axis), rangemode="tozero", showgrid=False, row=1, col=1, secondary_y=True
    )
    if with_replicas:
        _add_replicas(fig, data, row=2)
    _add_stage_regions(fig, data, rows)
    fig.update_xaxes(title_text=TIME_AXIS_TITLE, row=rows, col=1)
    fig.update_layout(**_LAYOUT, height=620 if with_replicas else 440)
    if not with_replicas:
        caption += " Replicas: not measured (" + data.missing.get("replica_counts.jsonl", "no replica counts") + ")."
    return Plot("plot-latency", title, caption, figure=fig)


def _add_replicas(fig: go.Figure, data: RunData, row: int) -> None:
    xs = [data.elapsed_s(c.t_s) for c in data.counts]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[c.ready for c in data.counts],
            mode="lines",
            name="ready replicas",
            line={"color": READY_COLOUR, "shape": "hv", "width": 2},
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[c.desired for c in data.counts],
            mode="lines",
            name="desired replicas",
            line={"color": DESIRED_COLOUR, "shape": "hv", "dash": "dash", "width": 2},
        ),
        row=row,
        col=1,
    )
    decisions = data.scale_decisions()
    if decisions:
        ups = [(t_s, d) for t_s, d in decisions if d.to_replicas >= d.from_replicas]
        downs = [(t_s, d) for t_s, d in decisions if d.to_replicas < d.from_replicas]
        for events, symbol, label in ((ups, "triangle-up", "scale up"), (downs, "triangle-down", "scale down")):
            if not events:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[data.elapsed_s(t_s) for t_s, _ in events],
                    y=[float(d.to_replicas) for _, d in events],
                    mode="markers",
                    name=f"{label} decision",
                    marker={"symbol": symbol, "size": 13, "color": "#f77f00", "line": {"width": 1, "color": "#000"}},
                    hovertext=[d.reason for _, d in events],
                ),
                row=row,
                col=1,
            )
        for t_s, decision in decisions:
            fig.add_annotation(
                x=data.elapsed_s(t_s),
                y=float(decision.to_replicas),
                text=f"{decision.from_replicas}→{decision.to_replicas}",
                showarrow=True,
                arrowhead=2,
                ax=0,
                ay=-26,
                font={"size": 11},
                row=row,
                col=1,
            )
    top = max([c.desired for c in data.counts] + [c.ready for c in data.counts])
    fig.update_yaxes(title_text="replicas", range=[0, top + 1], dtick=1, row=row, col=1)


# --------------------------------------------------------------------------- throughput


def throughput_timeline(data: RunData) -> Plot:
    title = "Offered and achieved throughput over time"
    caption = (
        "Offered: the arrival rate the open-model schedule asked for. Achieved: completed requests per second "
        "(successes and failures). Failed: failed requests per second."
    )
    if not data.series:
        reason = data.missing.get("client_intervals.jsonl", "no client results were recorded")
        return Plot("plot-throughput", title, caption, missing=reason)
    series = data.series
    xs = _midpoints(series)
    fig = go.Figure()
    if any(p.offered_rps is not None for p in series):
        gx, gy = _with_gaps(xs, [p.offered_rps for p in series], data.bucket_s)
        fig.add_trace(
            go.Scatter(
                x=gx,
                y=gy,
                mode="lines",
                name="offered (rps)",
                line={"color": LOAD_COLOUR, "dash": "dot", "shape": "hv"},
            )
        )
    else:
        caption += " Offered: not measured (every stage was closed-model, which has no arrival schedule)."
    gx, gy = _with_gaps(xs, [p.achieved_rps for p in series], data.bucket_s)
    fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name="achieved (rps)", line={"color": ACHIEVED_COLOUR}))
    gx, gy = _with_gaps(xs, [p.error_rps for p in series], data.bucket_s)
    fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name="failed (rps)", line={"color": ERROR_COLOUR}))
    _add_stage_regions(fig, data, 1)
    fig.update_xaxes(title_text=TIME_AXIS_TITLE)
    fig.update_yaxes(title_text="requests per second", rangemode="tozero")
    fig.update_layout(**_LAYOUT, height=400)
    return Plot("plot-throughput", title, caption, figure=fig)


# --------------------------------------------------------------------------- latency against throughput


def _error_bars(stages: Sequence[StageResult], key: str) -> tuple[list[float], list[float]]:
    """Asymmetric error bar lengths (ms) from each stage's CI; an unbounded side gets no bar."""
    plus: list[float] = []
    minus: list[float] = []
    for stage in stages:
        estimate = stage.latency[key]
        value = estimate.value_s or 0.0
        plus.append(0.0 if estimate.ci_high_s is None else (estimate.ci_high_s - value) * 1000.0)
        minus.append(0.0 if estimate.ci_low_s is None else (value - estimate.ci_low_s) * 1000.0)
    return plus, minus


def latency_vs_throughput(data: RunData) -> Plot:
    """p95 (and p50, p99) of each stage against its achieved throughput, with the knee and the objective lines."""
    title = "Latency against achieved throughput, per stage"
    caption = (
        "One point per stage (error bars: the percentile's confidence interval). Judged, valid stages are joined "
        "in order of throughput; grey hollow markers are stages not judged (warm-up) or invalid, shown with their "
        "p95 only. The star is the latency knee; dashed lines are the latency objectives and the maximum "
        "sustainable throughput."
    )
    with_p95 = [s for s in data.verdict.stages if s.latency.get("p95") is not None and s.latency["p95"].value_s]
    if not with_p95:
        return Plot("plot-knee", title, caption, missing="no stage has a p95 latency (no successful requests)")
    judged = sorted((s for s in with_p95 if s.judged and not s.invalid_reasons), key=lambda s: s.achieved_rps)
    others = [s for s in with_p95 if not (s.judged and not s.invalid_reasons)]
    fig = go.Figure()
    for key in ("p50", "p95", "p99"):
        own = [s for s in judged if s.latency.get(key) is not None and s.latency[key].value_s is not None]
        if not own:
            continue
        plus, minus = _error_bars(own, key)
        fig.add_trace(
            go.Scatter(
                x=[s.achieved_rps for s in own],
                y=[_ms(s.latency[key].value_s) for s in own],
                mode="lines+markers+text" if key == "p95" else "lines+markers",
                name=f"{key} latency (ms)",
                text=[s.name for s in own] if key == "p95" else None,
                textposition="top left",
                line={"color": PERCENTILE_COLOURS[key], "width": 2.2 if key == "p95" else 1.2},
                opacity=1.0 if key == "p95" else 0.6,
                marker={"size": 10 if key == "p95" else 7},
                error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
                hovertext=[f"stage {s.name}" for s in own],
            )
        )
    if others:
        plus, minus = _error_bars(others, "p95")
        fig.add_trace(
            go.Scatter(
                x=[s.achieved_rps for s in others],
                y=[_ms(s.latency["p95"].value_s) for s in others],
                mode="markers+text",
                name="p95, not judged or invalid (ms)",
                text=[s.name for s in others],
                textposition="top center",
                marker={"size": 10, "symbol": "circle-open", "color": LOAD_COLOUR},
                error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
                hovertext=[
                    f"stage {s.name}: " + ("; ".join(s.invalid_reasons) if s.invalid_reasons else "not judged")
                    for s in others
                ],
            )
        )
    saturation = data.verdict.saturation
    if saturation is not None and saturation.knee_rps is not None and saturation.knee_latency_s is not None:
        fig.add_trace(
            go.Scatter(
                x=[saturation.knee_rps],
                y=[saturation.knee_latency_s * 1000.0],
                mode="markers",
                name="latency knee",
                marker={"symbol": "star", "size": 18, "color": "#ffb703", "line": {"width": 1, "color": "#000"}},
            )
        )
    elif saturation is not None:
        caption += f" Knee: not found ({saturation.reason.split('; ')[-1]})."
    for key, threshold_ms in _latency_objectives_ms(data.verdict.objectives).items():
        fig.add_hline(
            y=threshold_ms,
            line={"color": PERCENTILE_COLOURS.get(key, ERROR_COLOUR), "dash": "dash", "width": 1},
            annotation_text=f"{key} objective {fmt_number(threshold_ms)} ms",
            annotation_position="top left",
        )
    if saturation is not None and saturation.max_sustainable_rps is not None:
        fig.add_vline(
            x=saturation.max_sustainable_rps,
            line={"color": ACHIEVED_COLOUR, "dash": "dash", "width": 1},
            annotation_text=f"max sustainable {fmt_number(saturation.max_sustainable_rps)} rps",
            annotation_position="top right",
        )
    fig.update_xaxes(title_text="achieved throughput (rps)", rangemode="tozero")
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero")
    fig.update_layout(**{**_LAYOUT, "hovermode": "closest"}, height=460)
    return Plot("plot-knee", title, caption, figure=fig)


# --------------------------------------------------------------------------- replica resources


def replica_resources(data: RunData) -> Plot:
    """CPU cores (and resident memory) of each replica over time."""
    title = "CPU and memory per replica over time"
    caption = "Each replica's CPU use in cores (1.0 = one full core) and resident memory, from the target."
    with_cpu = [s for s in data.samples if s.cpu_cores is not None]
    if not with_cpu:
        reason = data.missing.get("replica_samples.jsonl") or "the target reported no replica CPU use"
        return Plot("plot-cpu", title, caption, missing=reason)
    with_rss = [s for s in data.samples if s.rss_bytes is not None]
    rows = 2 if with_rss else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    replicas = sorted({s.replica for s in data.samples})
    spacing_s = data.bucket_s
    for index, replica in enumerate(replicas):
        colour = PALETTE[index % len(PALETTE)]
        own = [s for s in with_cpu if s.replica == replica]
        if own:
            gx, gy = _with_gaps([data.elapsed_s(s.t_s) for s in own], [s.cpu_cores for s in own], spacing_s * 3)
            fig.add_trace(
                go.Scatter(x=gx, y=gy, mode="lines", name=f"{replica} CPU (cores)", line={"color": colour}),
                row=1,
                col=1,
            )
        own_rss = [s for s in with_rss if s.replica == replica]
        if own_rss:
            gx, gy = _with_gaps(
                [data.elapsed_s(s.t_s) for s in own_rss],
                [None if s.rss_bytes is None else s.rss_bytes / 2**20 for s in own_rss],
                spacing_s * 3,
            )
            fig.add_trace(
                go.Scatter(
                    x=gx,
                    y=gy,
                    mode="lines",
                    name=f"{replica} RSS (MiB)",
                    line={"color": colour, "dash": "dot"},
                    showlegend=True,
                ),
                row=2,
                col=1,
            )
    request = next((s.cpu_request_cores for s in data.samples if s.cpu_request_cores is not None), None)
    if request is not None:
        fig.add_hline(
            y=request,
            line={"color": ERROR_COLOUR, "dash": "dash", "width": 1},
            annotation_text=f"CPU request {fmt_number(request)} cores",
            annotation_position="top left",
            row=1,
            col=1,
        )
    fig.update_yaxes(title_text="CPU (cores)", rangemode="tozero", row=1, col=1)
    if with_rss:
        fig.update_yaxes(title_text="RSS (MiB)", rangemode="tozero", row=2, col=1)
    else:
        caption += " Memory: not measured (the target reported no resident memory)."
    _add_stage_regions(fig, data, rows)
    fig.update_xaxes(title_text=TIME_AXIS_TITLE, row=rows, col=1)
    fig.update_layout(**_LAYOUT, height=560 if with_rss else 400)
    return Plot("plot-cpu", title, caption, figure=fig)


# --------------------------------------------------------------------------- errors


def errors_timeline(data: RunData) -> Plot:
    """Failed requests per second, stacked by kind."""
    title = "Errors by kind over time"
    caption = "Failed requests per second in each bucket, stacked by kind (HTTP status, timeout, connection, ...)."
    if not data.series:
        reason = data.missing.get("client_intervals.jsonl", "no client results were recorded")
        return Plot("plot-errors", title, caption, missing=reason)
    kinds = sorted({kind for p in data.series for kind in p.errors})
    if not kinds:
        requests = sum(p.requests for p in data.series)
        return Plot("plot-errors", title, caption, note=f"No failed requests: 0 of {requests} requests failed.")
    fig = go.Figure()
    xs = _midpoints(data.series)
    for index, kind in enumerate(kinds):
        fig.add_trace(
            go.Bar(
                x=xs,
                y=[p.errors.get(kind, 0) / p.duration_s for p in data.series],
                name=kind,
                marker={"color": PALETTE[(index + 1) % len(PALETTE)]},
                width=data.bucket_s,
            )
        )
    _add_stage_regions(fig, data, 1)
    fig.update_xaxes(title_text=TIME_AXIS_TITLE)
    fig.update_yaxes(title_text="failed requests per second", rangemode="tozero")
    fig.update_layout(**_LAYOUT, barmode="stack", bargap=0, height=380)
    totals: dict[str, int] = defaultdict(int)
    for p in data.series:
        for kind, count in p.errors.items():
            totals[kind] += count
    caption += " Totals: " + ", ".join(f"{kind} {count}" for kind, count in sorted(totals.items())) + "."
    return Plot("plot-errors", title, caption, figure=fig)


# --------------------------------------------------------------------------- server side (/metrics)


def _rates(
    samples: Sequence[ServerSample], value: Callable[[ServerSample], float | None]
) -> list[tuple[float, float | None]]:
    """Per-second rate of a cumulative counter between consecutive scrapes; a reset gives no point."""
    points: list[tuple[float, float | None]] = []
    for before, after in itertools.pairwise(samples):
        a, b = value(before), value(after)
        dt_s = after.t_s - before.t_s
        if a is None or b is None or dt_s <= 0 or b < a:
            points.append((after.t_s, None))
            continue
        points.append((after.t_s, (b - a) / dt_s))
    return points


def _batch_sizes(samples: Sequence[ServerSample]) -> list[tuple[float, float | None]]:
    points: list[tuple[float, float | None]] = []
    for before, after in itertools.pairwise(samples):
        values = (before.batch_size_sum, after.batch_size_sum, before.batch_size_count, after.batch_size_count)
        if any(v is None for v in values):
            points.append((after.t_s, None))
            continue
        s0, s1, c0, c1 = (float(v) for v in values if v is not None)
        points.append((after.t_s, (s1 - s0) / (c1 - c0) if c1 > c0 and s1 >= s0 else None))
    return points


def server_metrics(data: RunData) -> Plot:
    """Each replica's own request rate and mean adaptive-batch size, from its Prometheus /metrics."""
    title = "Server-side request rate and batch size per replica"
    caption = (
        "From each replica's /metrics: requests per second it served (counter rate between scrapes) and the "
        "mean size of the batches it ran."
    )
    ok = [s for s in data.server if s.ok]
    failed = [s for s in data.server if not s.ok]
    if not ok:
        if failed:
            first = next((s.error for s in failed if s.error), "no error text")
            reason = f"every /metrics scrape failed ({len(failed)} failures; first: {first})"
        else:
            reason = data.missing.get("server_samples.jsonl", "no /metrics scrapes were recorded")
        return Plot("plot-server", title, caption, missing=reason)
    by_replica: dict[str, list[ServerSample]] = defaultdict(list)
    for sample in ok:
        by_replica[sample.replica].append(sample)
    has_batches = any(s.batch_size_count is not None for s in ok)
    rows = 2 if has_batches else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    spacing_s = data.bucket_s * 3
    for index, (replica, own) in enumerate(sorted(by_replica.items())):
        colour = PALETTE[index % len(PALETTE)]
        rates = _rates(own, lambda s: s.requests_total)
        gx, gy = _with_gaps([data.elapsed_s(t) for t, _ in rates], [v for _, v in rates], spacing_s)
        fig.add_trace(
            go.Scatter(x=gx, y=gy, mode="lines", name=f"{replica} served (rps)", line={"color": colour}), row=1, col=1
        )
        if has_batches:
            sizes = _batch_sizes(own)
            gx, gy = _with_gaps([data.elapsed_s(t) for t, _ in sizes], [v for _, v in sizes], spacing_s)
            fig.add_trace(
                go.Scatter(
                    x=gx, y=gy, mode="lines", name=f"{replica} batch size", line={"color": colour, "dash": "dot"}
                ),
                row=2,
                col=1,
            )
    fig.update_yaxes(title_text="served (rps)", rangemode="tozero", row=1, col=1)
    if has_batches:
        fig.update_yaxes(title_text="mean batch size", rangemode="tozero", row=2, col=1)
    else:
        caption += " Batch size: not measured (the service exposes no batch-size histogram)."
    if failed:
        caption += f" {len(failed)} scrape(s) failed and are left out (e.g. while a replica started)."
    _add_stage_regions(fig, data, rows)
    fig.update_xaxes(title_text=TIME_AXIS_TITLE, row=rows, col=1)
    fig.update_layout(**_LAYOUT, height=520 if has_batches else 380)
    return Plot("plot-server", title, caption, figure=fig)


def engine_metrics(data: RunData) -> Plot:
    """An LLM engine's queue, running sequences and KV-cache use per replica (vLLM's gauges in its /metrics)."""
    title = "LLM engine: queued and running requests, KV-cache use per replica"
    caption = (
        "From each replica's /metrics, where it exports vLLM's gauges: requests waiting for a slot "
        "(vllm:num_requests_waiting), sequences generating together (vllm:num_requests_running), and the share of the "
        "KV cache in use (vllm:kv_cache_usage_perc). A queue that grows while the running count stays at its cap is "
        "the engine's own saturation."
    )
    by_replica: dict[str, list[ServerSample]] = defaultdict(list)
    for sample in data.server:
        if sample.ok and (sample.engine_waiting is not None or sample.engine_running is not None):
            by_replica[sample.replica].append(sample)
    if not by_replica:
        return Plot("plot-engine", title, caption, missing="no replica exported vLLM's engine gauges")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    spacing_s = data.bucket_s * 3
    for index, (replica, own) in enumerate(sorted(by_replica.items())):
        colour = PALETTE[index % len(PALETTE)]
        xs = [data.elapsed_s(sample.t_s) for sample in own]
        series: list[tuple[str, Callable[[ServerSample], float | None], int, dict[str, str]]] = [
            ("waiting", lambda s: s.engine_waiting, 1, {"color": colour}),
            ("running", lambda s: s.engine_running, 1, {"color": colour, "dash": "dot"}),
            (
                "KV cache %",
                lambda s: None if s.engine_kv_cache_usage is None else 100 * s.engine_kv_cache_usage,
                2,
                {"color": colour},
            ),
        ]
        for name, value, row, line in series:
            gx, gy = _with_gaps(xs, [value(sample) for sample in own], spacing_s)
            fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name=f"{replica} {name}", line=line), row=row, col=1)
    fig.update_yaxes(title_text="requests", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="KV cache in use (%)", range=[0, 100], row=2, col=1)
    _add_stage_regions(fig, data, 2)
    fig.update_xaxes(title_text=TIME_AXIS_TITLE, row=2, col=1)
    fig.update_layout(**_LAYOUT, height=520)
    return Plot("plot-engine", title, caption, figure=fig)


def all_plots(data: RunData) -> list[Plot]:
    """Every plot of the run report, in page order; the LLM engine's only where a replica exported its gauges."""
    plots = [
        latency_timeline(data),
        throughput_timeline(data),
        latency_vs_throughput(data),
        replica_resources(data),
        errors_timeline(data),
        server_metrics(data),
    ]
    engine = engine_metrics(data)
    return plots if engine.missing else [*plots, engine]
