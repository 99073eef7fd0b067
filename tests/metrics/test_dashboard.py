"""harness.metrics.dashboard: the Grafana dashboard the project ships is what grafana-foundation-sdk builds
(HARNESS_UPDATE_GOLDEN=1 rewrites docs/grafana/harness-dashboard.json), it reads only series the remote write
sends, and `harness dashboard` prints it. Its queries run against a real Prometheus in test_remote_write.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from click.testing import CliRunner

from harness.analysis.latency import LatencyHistogram
from harness.cli import cli
from harness.metrics.dashboard import UID, build_dashboard, dashboard_json, panel_specs
from harness.metrics.remote_write import CounterState, series_of
from harness.model import ClientInterval, ReplicaCount, ReplicaSample, ServerSample
from harness.resources import data_path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "docs" / "grafana" / "harness-dashboard.json"


def test_the_shipped_dashboard_is_what_the_sdk_builds() -> None:
    built = dashboard_json()
    if os.environ.get("HARNESS_UPDATE_GOLDEN"):
        SHIPPED.write_text(built)
    assert SHIPPED.read_text() == built, (
        "run with HARNESS_UPDATE_GOLDEN=1 to rewrite docs/grafana/harness-dashboard.json"
    )
    assert data_path("grafana", "harness-dashboard.json").read_text() == built, "package data reaches the same file"


def test_the_dashboard_picks_runs_and_shows_every_panel() -> None:
    board = build_dashboard()
    assert board["uid"] == UID
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "scenario", "run_id"]
    titles = [panel["title"] for panel in board["panels"] if panel["type"] == "timeseries"]
    assert titles == [spec.title for spec in panel_specs()]
    for panel in board["panels"]:
        if panel["type"] == "timeseries":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all('run_id=~"$run_id"' in target["expr"] for target in panel["targets"]), panel["title"]


def remote_write_names() -> set[str]:
    """Every metric name the remote write sends, from one record of each kind."""
    histogram = LatencyHistogram()
    histogram.record_s(0.01)
    records = [
        ClientInterval(0.0, 1.0, 1, "s", 2, 5.0, 5, 6, 1, {"timeout": 1}, histogram.encode()),
        ReplicaCount(1.0, 2, 1),
        ReplicaSample(1.0, "replica-1", True, cpu_cores=0.5, rss_bytes=1e8),
        ServerSample(1.0, "replica-1", True, in_progress=3.0),
    ]
    counters = CounterState()
    return {point.name for record in records for point in series_of(record, counters)}


def test_every_query_reads_series_the_remote_write_sends() -> None:
    sent = remote_write_names()
    read = {name for spec in panel_specs() for query in spec.queries for name in re.findall(r"harness_\w+", query.expr)}
    assert read <= sent, read - sent
    # The throughput panel reads the counter's rate; achieved_rps (each interval's own) and readiness are for queries.
    assert sent - read == {"harness_achieved_rps", "harness_replica_ready"}, "every other series has a panel"


def test_harness_dashboard_prints_it() -> None:
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == 0
    assert json.loads(result.output)["uid"] == UID and result.output == SHIPPED.read_text()
