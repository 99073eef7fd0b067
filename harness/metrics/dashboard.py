"""The Grafana dashboard of the series a run sends by remote write (harness.metrics.remote_write), built with
Grafana's own SDK (grafana-foundation-sdk) rather than written as JSON by hand.

The JSON it builds ships with the package (docs/grafana/harness-dashboard.json, package data; `harness dashboard`
prints it) so that an installed harness needs no SDK; a test keeps the file equal to what this module builds
(HARNESS_UPDATE_GOLDEN=1 rewrites it) and runs every query against a real Prometheus. Pick a run by scenario and
run id, and its throughput, latency, errors and replicas sit beside the cluster's own series.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

UID = "harness-run"
TITLE = "harness: load test runs"
# Every query selects the chosen runs; $__rate_interval is Grafana's safe window for rate().
RUN = 'run_id=~"$run_id"'


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """A time-series panel: title, what it shows, its unit (Grafana's unit ids) and its queries."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]


LOAD = (
    PanelSpec(
        "Throughput",
        "Completed requests per second by stage, all load-generator processes together, and the offered rate of "
        "open-model stages.",
        "reqps",
        (
            Query(f"sum by (stage) (rate(harness_requests_total{{{RUN}}}[$__rate_interval]))", "{{stage}}"),
            Query(f"sum(harness_offered_rps{{{RUN}}})", "offered"),
        ),
    ),
    PanelSpec(
        "Latency",
        "Client-side latency percentiles of each interval (the worst load-generator process), from the intended "
        "send time in open-model stages.",
        "s",
        (Query(f"max by (quantile) (harness_request_latency_seconds{{{RUN}}})", "p{{quantile}}"),),
    ),
    PanelSpec(
        "Failed requests by kind",
        "Failed requests per second by kind: http_<status>, timeout, connection_error, dropped_max_in_flight; "
        "report.md and the terminal show what the service answered.",
        "reqps",
        (Query(f"sum by (kind) (rate(harness_failed_requests_total{{{RUN}}}[$__rate_interval]))", "{{kind}}"),),
    ),
    PanelSpec(
        "Users",
        "Closed-model users running, all load-generator processes together.",
        "short",
        (Query(f"sum(harness_users{{{RUN}}})", "users"),),
    ),
)

REPLICAS = (
    PanelSpec(
        "Replicas",
        "Desired and ready replicas.",
        "short",
        (Query(f"max by (state) (harness_replicas{{{RUN}}})", "{{state}}"),),
    ),
    PanelSpec(
        "Replica CPU",
        "CPU each replica used, in cores (local and Docker targets; the cluster's own metrics on Kubernetes).",
        "short",
        (Query(f"harness_replica_cpu_cores{{{RUN}}}", "{{replica}}"),),
    ),
    PanelSpec(
        "Replica memory",
        "Resident memory of each replica.",
        "bytes",
        (Query(f"harness_replica_memory_bytes{{{RUN}}}", "{{replica}}"),),
    ),
    PanelSpec(
        "In-flight requests",
        "Requests each replica was handling, from its own /metrics (BentoML services).",
        "short",
        (Query(f"harness_server_in_flight_requests{{{RUN}}}", "{{replica}}"),),
    ),
)


def panel_specs() -> tuple[PanelSpec, ...]:
    """Every panel, in the dashboard's order."""
    return LOAD + REPLICAS


def build_dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, built with grafana-foundation-sdk (a dev dependency)."""
    from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement, SortOrder, TooltipDisplayMode
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")

    def run_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(source)
            .query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
        )

    def panel(spec: PanelSpec) -> timeseries.Panel:
        built = (
            timeseries.Panel()
            .title(spec.title)
            .description(spec.description)
            .unit(spec.unit)
            .datasource(source)
            .span(12)
            .height(8)
            .legend(
                common.VizLegendOptions()
                .show_legend(True)
                .display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM)
                .calcs([])
            )
            .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
        )
        for index, query in enumerate(spec.queries):
            built = built.with_target(
                prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
            )
        return built

    board = (
        dashboard.Dashboard(TITLE)
        .uid(UID)
        .tags(["harness", "load-test"])
        .description("Series that `harness run --remote-write URL` sends while a run goes on.")
        .time("now-30m", "now")
        .refresh("10s")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(run_variable("scenario", "Scenario", "label_values(harness_requests_total, scenario)"))
        .with_variable(
            run_variable("run_id", "Run", 'label_values(harness_requests_total{scenario=~"$scenario"}, run_id)')
        )
        .with_row(dashboard.Row("Load"))
    )
    for spec in LOAD:
        board = board.with_panel(panel(spec))
    board = board.with_row(dashboard.Row("Replicas"))
    for spec in REPLICAS:
        board = board.with_panel(panel(spec))
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model


def dashboard_json() -> str:
    """The dashboard's JSON as the project ships it (sorted keys, two-space indent, a final newline)."""
    return json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n"
