"""harness.report._figures: each plot carries the recorded series it names, shows gaps as gaps, and says why it is
absent instead of drawing from data that is not there."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness.model import PercentileEstimate, ServerSample
from harness.report._figures import (
    _batch_sizes,
    _error_bars,
    _rates,
    _with_gaps,
    all_plots,
    errors_timeline,
    latency_timeline,
    replica_resources,
    server_metrics,
    throughput_timeline,
)
from harness.report._rundata import RunData, load_run
from harness.rundir import RunDirectory


def trace(plot_figure: Any, name: str) -> Any:
    (found,) = [t for t in plot_figure.data if t.name == name]
    return found


def points(values: Any) -> list[float]:
    return [v for v in values if v is not None]


@given(
    steps=st.lists(st.floats(min_value=0.01, max_value=10, allow_nan=False), min_size=1, max_size=40),
    spacing_s=st.floats(min_value=0.1, max_value=5, allow_nan=False),
)
def test_a_break_is_inserted_exactly_where_points_are_further_apart_than_one_and_a_half_spacings(
    steps: list[float], spacing_s: float
) -> None:
    xs = [sum(steps[: i + 1]) for i in range(len(steps))]
    ys = [float(i) for i in range(len(xs))]
    gx, gy = _with_gaps(xs, ys, spacing_s)
    gaps = sum(1 for before, after in itertools.pairwise(xs) if after - before > 1.5 * spacing_s)
    assert len(gx) == len(xs) + gaps and gx.count(None) == gy.count(None) == gaps
    assert points(gx) == xs and points(gy) == ys, "every point is kept, in order"
    assert gx[0] is not None and gx[-1] is not None


def test_the_latency_timeline_draws_the_recorded_percentiles_and_the_replicas(recorded_run: RunDirectory) -> None:
    data = load_run(recorded_run)
    plot = latency_timeline(data)
    assert plot.figure is not None and plot.missing is None
    recorded_p95_ms = [p.p95_s * 1000.0 for p in data.series if p.p95_s is not None]
    assert points(trace(plot.figure, "p95 latency (ms)").y) == recorded_p95_ms
    assert list(trace(plot.figure, "ready replicas").y) == [c.ready for c in data.counts]
    assert "Replicas: not measured" not in plot.caption


def test_without_replica_counts_the_timeline_says_replicas_were_not_measured(recorded_run: RunDirectory) -> None:
    data = dataclasses.replace(load_run(recorded_run), counts=[])
    plot = latency_timeline(data)
    assert plot.figure is not None
    assert not [t for t in plot.figure.data if t.name == "ready replicas"]
    assert "Replicas: not measured" in plot.caption


def test_every_client_plot_names_why_it_is_absent_without_client_results(recorded_run: RunDirectory) -> None:
    data = dataclasses.replace(load_run(recorded_run), series=[], intervals=[])
    for build in (latency_timeline, throughput_timeline, errors_timeline):
        plot = build(data)
        assert plot.figure is None and plot.missing, build.__name__


def test_throughput_carries_the_achieved_rates_and_a_closed_model_run_has_no_offered_line(
    recorded_run: RunDirectory,
) -> None:
    data = load_run(recorded_run)
    plot = throughput_timeline(data)
    assert plot.figure is not None
    assert points(trace(plot.figure, "achieved (rps)").y) == [p.achieved_rps for p in data.series]
    closed = dataclasses.replace(data, series=[dataclasses.replace(p, offered_rps=None) for p in data.series])
    closed_plot = throughput_timeline(closed)
    assert closed_plot.figure is not None
    assert not [t for t in closed_plot.figure.data if t.name == "offered (rps)"]
    assert "Offered: not measured" in closed_plot.caption


def test_errors_are_stacked_by_kind_with_totals_and_a_run_without_failures_says_so(recorded_run: RunDirectory) -> None:
    data = load_run(recorded_run)
    plot = errors_timeline(data)
    assert plot.figure is not None
    kinds = sorted({kind for p in data.series for kind in p.errors})
    assert sorted(t.name for t in plot.figure.data) == kinds
    for kind in kinds:
        assert f"{kind} {sum(p.errors.get(kind, 0) for p in data.series)}" in plot.caption
    clean = dataclasses.replace(data, series=[dataclasses.replace(p, errors={}) for p in data.series])
    quiet = errors_timeline(clean)
    assert quiet.figure is None and quiet.note is not None and quiet.note.startswith("No failed requests: 0 of")


def test_replica_resources_are_absent_without_cpu_samples(recorded_run: RunDirectory) -> None:
    data = load_run(recorded_run)
    assert replica_resources(data).figure is not None
    no_cpu = dataclasses.replace(data, samples=[dataclasses.replace(s, cpu_cores=None) for s in data.samples])
    assert replica_resources(no_cpu).missing


def sample(t_s: float, requests: float | None, batch_sum: float | None = None, batch_count: float | None = None) -> Any:
    return ServerSample(
        t_s=t_s,
        replica="r",
        ok=True,
        requests_total=requests,
        batch_size_sum=batch_sum,
        batch_size_count=batch_count,
    )


def test_counter_rates_skip_resets_and_missing_values() -> None:
    samples = [sample(0, 0), sample(2, 10), sample(4, 4), sample(6, None), sample(8, 20)]
    assert _rates(samples, lambda s: s.requests_total) == [(2, 5.0), (4, None), (6, None), (8, None)]


def test_batch_sizes_are_the_mean_of_each_interval_between_scrapes() -> None:
    samples = [sample(0, 0, 0, 0), sample(1, 0, 12, 4), sample(2, 0, 12, 4), sample(3, 0, None, None)]
    assert _batch_sizes(samples) == [(1, 3.0), (2, None), (3, None)]


def test_server_metrics_name_the_first_failure_when_every_scrape_failed(recorded_run: RunDirectory) -> None:
    data = load_run(recorded_run)
    assert server_metrics(data).figure is not None
    failed = dataclasses.replace(
        data, server=[dataclasses.replace(s, ok=False, error="connection refused") for s in data.server]
    )
    plot = server_metrics(failed)
    assert plot.missing is not None and "every /metrics scrape failed" in plot.missing
    assert "first: connection refused" in plot.missing


def test_error_bars_come_from_each_stage_interval_and_an_open_side_has_none(recorded_run: RunDirectory) -> None:
    stages = load_run(recorded_run).verdict.stages
    stage = dataclasses.replace(
        stages[0],
        latency={
            "p95": PercentileEstimate(0.95, value_s=0.1, ci_low_s=0.08, ci_high_s=None, samples=500, confidence=0.95)
        },
    )
    plus, minus = _error_bars([stage], "p95")
    assert plus == [0.0] and round(minus[0], 6) == 20.0


def test_all_plots_come_in_page_order(recorded_run: RunDirectory) -> None:
    data: RunData = load_run(recorded_run)
    assert [plot.id for plot in all_plots(data)] == [
        "plot-latency",
        "plot-throughput",
        "plot-knee",
        "plot-cpu",
        "plot-errors",
        "plot-server",
    ]
