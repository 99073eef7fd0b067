"""What a run shows while it goes: the live progress line's figures and the harness's own Prometheus exporter, both
fed from the load generator's interval records as they arrive and from the collector's latest snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.analysis.timeline import latest_figures
from harness.config import Scenario
from harness.model import ClientInterval
from harness.report.progress import ProgressSnapshot

if TYPE_CHECKING:
    from harness.metrics.collector import CollectorSnapshot
    from harness.metrics.exporter import HarnessExporter


class LiveView:
    """Running totals of the load's interval records, and the figures shown from them."""

    def __init__(
        self,
        scenario: Scenario,
        progress: Callable[[ProgressSnapshot], None],
        exporter: HarnessExporter | None = None,
    ) -> None:
        self.scenario = scenario
        self.progress = progress
        self.exporter = exporter
        self.intervals: list[ClientInterval] = []
        self.requests_total = 0
        self.failures_total = 0
        # How many interval records were shown: the view is redrawn only when new ones arrive.
        self._shown = 0

    def add(self, record: ClientInterval) -> None:
        self.intervals.append(record)
        self.requests_total += record.requests
        self.failures_total += record.failures
        if self.exporter is not None and record.failures:
            self.exporter.add_errors(record.failures)

    def update(self, test_start_s: float | None, snapshot: CollectorSnapshot | None) -> None:
        """Show the latest interval's figures, when one arrived since the last update."""
        if test_start_s is None or len(self.intervals) == self._shown:
            return
        self._shown = len(self.intervals)
        latest = latest_figures(self.intervals)
        stage_names = [stage.name for stage in self.scenario.stages]
        self.progress(
            ProgressSnapshot(
                stage=latest.stage,
                stage_index=stage_names.index(latest.stage) if latest.stage in stage_names else 0,
                stage_count=len(stage_names),
                elapsed_s=time.time() - test_start_s,
                total_s=self.scenario.duration_s,
                rps=latest.achieved_rps,
                p95_s=latest.p95_s,
                ready_replicas=snapshot.ready_replicas if snapshot else None,
                desired_replicas=snapshot.desired_replicas if snapshot else None,
                errors=self.failures_total,
                requests=self.requests_total,
            )
        )
        if self.exporter is not None:
            self.exporter.set_achieved_rps(latest.achieved_rps)
            self.exporter.set_offered_rps(latest.offered_rps)
            self.exporter.set_latency_s(latest.p50_s, latest.p95_s, latest.p99_s)
            if snapshot is not None:
                self.exporter.set_replicas(snapshot.desired_replicas, snapshot.ready_replicas)
