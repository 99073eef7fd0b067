"""Builders of raw run records for the analysis tests (imported by the test modules beside it)."""

from __future__ import annotations

from collections.abc import Sequence

from harness.analysis.latency import LatencyHistogram
from harness.model import ClientInterval

RUN_START_S = 1_700_000_000.0


def interval(
    t_start_s: float,
    latencies_s: Sequence[float] = (),
    *,
    length_s: float = 1.0,
    process: int = 0,
    stage: str = "steady",
    users: int = 0,
    offered_rps: float | None = None,
    scheduled: int | None = None,
    failures: int = 0,
    errors: dict[str, int] | None = None,
    dropped: int = 0,
    send_lag_max_s: float = 0.0,
    loadgen_cpu_cores: float | None = None,
    error_samples: dict[str, list[str]] | None = None,
) -> ClientInterval:
    """One process's interval starting `t_start_s` seconds after RUN_START_S, with these successful latencies."""
    histogram = LatencyHistogram()
    for latency_s in latencies_s:
        histogram.record_s(latency_s)
    requests = len(latencies_s) + failures
    return ClientInterval(
        t_start_s=RUN_START_S + t_start_s,
        t_end_s=RUN_START_S + t_start_s + length_s,
        process=process,
        stage=stage,
        users=users,
        offered_rps=offered_rps,
        scheduled=requests + dropped if scheduled is None else scheduled,
        requests=requests,
        failures=failures,
        errors=errors if errors is not None else ({"http_500": failures} if failures else {}),
        latency_hdr=histogram.encode(),
        dropped=dropped,
        send_lag_max_s=send_lag_max_s,
        loadgen_cpu_cores=loadgen_cpu_cores,
        error_samples=error_samples or {},
    )
