"""Plain data shared along the pipeline: what collectors record and what the analysis returns.

Everything here is a frozen dataclass of plain values, so the pure core (analysis, autoscaling,
verdict) and every renderer can use it without touching I/O. Times are seconds since the epoch
(`t_s`, `*_at_s`) or seconds since the run's start (`elapsed_s`), as each name says. JSON form:
`to_json_dict` / `from_json_dict` (dataclass fields map 1:1 to keys).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

T = TypeVar("T")


class Status(StrEnum):
    """Outcome of one objective, one stage or the whole run; order is severity for the run."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


# --------------------------------------------------------------------------- raw records (collected)


@dataclass(frozen=True)
class ClientInterval:
    """One load-generator process's results over one interval, written by the Locust process."""

    t_start_s: float
    t_end_s: float
    process: int
    stage: str
    users: int
    # Open model: arrivals due in this interval; closed model: None.
    offered_rps: float | None
    scheduled: int
    # Completed requests, successes and failures together.
    requests: int
    failures: int
    errors: dict[str, int]
    # Base64 of a compressed HdrHistogram of successful requests' latency in microseconds,
    # measured from the intended send time in open-model stages.
    latency_hdr: str
    # Open model: arrivals not sent because max_in_flight requests were outstanding.
    dropped: int = 0
    # Largest delay between an arrival's intended and actual send time (load-generator lag).
    send_lag_max_s: float = 0.0
    # CPU used by the load-generator process in this interval, in cores (1.0 = one full core).
    loadgen_cpu_cores: float | None = None


@dataclass(frozen=True)
class ServerSample:
    """One scrape of one replica's Prometheus /metrics; counters are cumulative since replica start."""

    t_s: float
    replica: str
    ok: bool
    error: str | None = None
    requests_total: float | None = None
    in_progress: float | None = None
    duration_sum_s: float | None = None
    duration_count: float | None = None
    batch_size_sum: float | None = None
    batch_size_count: float | None = None


@dataclass(frozen=True)
class ReplicaSample:
    """One replica's readiness and resource use at one moment."""

    t_s: float
    replica: str
    ready: bool
    cpu_cores: float | None = None
    rss_bytes: float | None = None
    cpu_request_cores: float | None = None
    # CPU ids the replica may run on, when pinned.
    cpus: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ReplicaCount:
    """Desired and ready replica counts at one moment."""

    t_s: float
    desired: int
    ready: int


@dataclass(frozen=True)
class RunEvent:
    """Something that happened at one moment: stage_start, replica_started, replica_ready,
    replica_stopped, replica_crashed, scale_decision, warning."""

    t_s: float
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageWindow:
    """A stage as it actually ran: its planned load and its wall-clock window."""

    name: str
    start_s: float
    end_s: float
    judged: bool
    users: int | None
    arrival_rate_rps: float | None


def cut_windows(windows: Sequence[StageWindow], ended_s: float) -> list[StageWindow]:
    """The stages as far as they ran when the load ended at `ended_s`: later ones dropped, the last cut."""
    return [replace(window, end_s=min(window.end_s, ended_s)) for window in windows if window.start_s < ended_s]


# --------------------------------------------------------------------------- analysis results


@dataclass(frozen=True)
class PercentileEstimate:
    """A latency percentile with a distribution-free confidence interval (None when not computable)."""

    q: float
    value_s: float | None
    ci_low_s: float | None
    ci_high_s: float | None
    samples: int
    confidence: float


def percentile_key(q: float) -> str:
    """The key of a percentile in `StageResult.latency` and `sample_shortfalls`: p50, p95, p99.9."""
    return f"p{q:g}"


@dataclass(frozen=True)
class StageResult:
    """Everything measured in one stage."""

    name: str
    judged: bool
    start_s: float
    end_s: float
    duration_s: float
    offered_users: int | None
    offered_rps: float | None
    achieved_rps: float
    requests: int
    failures: int
    error_rate: float | None
    errors: dict[str, int]
    latency: dict[str, PercentileEstimate]
    dropped: int
    replicas_min: int | None
    replicas_max: int | None
    loadgen_cpu_max_cores: float | None
    # Reasons the stage cannot be judged; empty when valid.
    invalid_reasons: list[str] = field(default_factory=list)
    # Percentiles ("p99") with too few samples to be judged, and why; other objectives stay judgeable.
    sample_shortfalls: dict[str, str] = field(default_factory=dict)
    latency_mean_s: float | None = None


@dataclass(frozen=True)
class ObjectiveResult:
    """One objective judged on one stage (or on the run, for autoscaling objectives)."""

    objective: str
    metric: str
    stage: str | None
    status: Status
    threshold: float
    bound: str  # "max" or "min"
    measured: float | None
    ci_low: float | None
    ci_high: float | None
    reason: str


@dataclass(frozen=True)
class Saturation:
    """Maximum sustainable throughput and the latency knee, from a ramp, sweep or stepped run."""

    max_sustainable_rps: float | None
    max_sustainable_rps_per_replica: float | None
    limiting_stage: str | None
    knee_rps: float | None
    knee_latency_s: float | None
    scaling_efficiency: float | None
    reason: str


@dataclass(frozen=True)
class CapacityPlan:
    """Replicas and resources for a target peak, from the measured per-replica sustainable throughput."""

    target_peak_rps: float
    headroom: float
    per_replica_rps: float
    replicas_needed: int
    cpu_request_cores: float | None
    memory_request_bytes: float | None
    concurrency_per_replica: int | None
    monthly_cost: float | None
    reason: str


@dataclass(frozen=True)
class StepAutoscaling:
    """How autoscaling reacted to one load step."""

    stage: str
    step_at_s: float
    first_scale_up_decision_s: float | None
    new_replicas_ready_s: float | None
    p95_recovered_s: float | None
    # Seconds with the per-interval p95 above the objective; None without a p95 objective.
    violation_s: float | None
    replicas_min: int
    replicas_max: int
    replicas_final: int


@dataclass(frozen=True)
class Verdict:
    """The run's conclusion: overall status, per-objective and per-stage results, and derived figures."""

    status: Status
    exit_code: int
    objectives: list[ObjectiveResult]
    stages: list[StageResult]
    saturation: Saturation | None = None
    capacity: CapacityPlan | None = None
    autoscaling: list[StepAutoscaling] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- JSON round trip


def to_json_dict(value: Any) -> Any:
    """Turn a dataclass tree into JSON-ready dicts, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_json_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_dict(v) for v in value]
    return value


def _convert(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], raw) if len(options) == 1 else raw
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in raw]
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v) for v in raw)
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _convert(item, v) for k, v in raw.items()}
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(raw)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json_dict(hint, raw)
    if hint is float and isinstance(raw, int):
        return float(raw)
    return raw


def from_json_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a dataclass (recursively) from `to_json_dict` output; unknown keys are an error."""
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    kwargs = {name: _convert(hints[name], raw) for name, raw in data.items()}
    return cls(**kwargs)
