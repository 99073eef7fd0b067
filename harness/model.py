"""Plain data shared along the pipeline: what collectors record and what the analysis returns.

Everything here is a frozen dataclass of plain values, so the pure core (analysis, autoscaling,
verdict) and every renderer can use it without touching I/O. Times are seconds since the epoch
(`t_s`, `*_at_s`) or seconds since the run's start (`elapsed_s`), as each name says. JSON form:
`to_json_dict` / `from_json_dict` (dataclass fields map 1:1 to keys; a field's metadata "json" renames
its key where the name would be a Python keyword, as "from").
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

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
    # Answers with the expected status whose body was checked, and those that disagreed with the expected output
    # or with the same body's answer alone (mismatch_rate).
    checked: int = 0
    mismatches: int = 0
    # Requests sent as bad input (expected 4xx) that ended, and those answered 5xx or not at all (bad_input_5xx_rate);
    # those answered 2xx, taken as valid input.
    bad_inputs: int = 0
    bad_input_5xx: int = 0
    bad_input_accepted: int = 0
    # A few short, redacted samples of what each kind of error got back (its answer's body, or the client's error),
    # at most harness.analysis.failures.SAMPLES_PER_KIND per kind.
    error_samples: dict[str, list[str]] = field(default_factory=dict)
    # Streamed answers (Server-Sent Events) read to their end without error, and their figures (harness.load.
    # streaming): compressed HdrHistograms like latency_hdr of time to first token (from the intended send time in
    # open-model stages), of every gap between tokens, and of each request's time per output token; their input
    # and output tokens, and the sum of squared output tokens (the spread of the output token rate).
    streamed: int = 0
    ttft_hdr: str = ""
    itl_hdr: str = ""
    tpot_hdr: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    output_tokens_squares: int = 0
    # Streamed requests that met every per-request limit of a goodput objective, keyed by RequestLimits.key.
    good_requests: dict[str, int] = field(default_factory=dict)
    # The same outcomes per named request (`requests:`), by name; the fields above add up every request, and
    # also count what no request was chosen for (arrivals dropped at max_in_flight, no ready replica). Empty in
    # records of scenarios without `requests:` and in those an older harness wrote.
    by_request: dict[str, RequestTally] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestTally:
    """One named request's outcomes in one ClientInterval: the interval's own outcome fields, names and meanings
    alike, for this request alone."""

    requests: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, list[str]] = field(default_factory=dict)
    latency_hdr: str = ""
    checked: int = 0
    mismatches: int = 0
    bad_inputs: int = 0
    bad_input_5xx: int = 0
    bad_input_accepted: int = 0
    streamed: int = 0
    ttft_hdr: str = ""
    itl_hdr: str = ""
    tpot_hdr: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    output_tokens_squares: int = 0
    good_requests: dict[str, int] = field(default_factory=dict)


def request_view(interval: ClientInterval, request: str) -> ClientInterval:
    """The interval as if only `request` had been sent (KeyError when it was not sent in it): its outcomes, and the
    process's own figures (users, schedule, CPU) as they were."""
    tally = interval.by_request[request]
    return replace(interval, **{f.name: getattr(tally, f.name) for f in dataclasses.fields(tally)}, by_request={})


@dataclass(frozen=True)
class RequestLimits:
    """Per-request limits of a goodput objective: a request counts towards goodput only if it met every one of
    them (None: not limited)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    latency_ms: float | None = None

    @property
    def key(self) -> str:
        """A stable name of these limits ("ttft_ms<=500,tpot_ms<=50"), under which requests meeting them are counted."""
        parts = [(name, getattr(self, name)) for name in ("ttft_ms", "tpot_ms", "latency_ms")]
        return ",".join(f"{name}<={value:g}" for name, value in parts if value is not None)


@dataclass(frozen=True)
class LoadgenOverhead:
    """The load generator's own added latency, measured by one Locust process just before the load.

    Calibration: requests sent through the open-model path (same client, same timing, latency from the
    intended send time) to a null endpoint on 127.0.0.1 that answers at once, in the same process; the
    percentiles are what that path adds to every latency it measures (an upper bound: the null
    endpoint's own work is in them).
    """

    process: int
    requests: int
    rate_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica as a target sees it right now (what the collector, faults and the load's endpoints read)."""

    id: str
    base_url: str
    ready: bool
    started_at_s: float
    ready_at_s: float | None = None
    # Where resource use can be read: a local process id, or a container id.
    pid: int | None = None
    container_id: str | None = None
    cpus: tuple[int, ...] | None = None
    # Set when the replica died on its own (not stopped by the harness).
    crashed: bool = False


@dataclass(frozen=True)
class ResourceUse:
    """A replica's CPU (cores, averaged since the previous call) and resident memory."""

    cpu_cores: float | None
    rss_bytes: float | None


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
    # An LLM engine's state where the replica exports vLLM's gauges (vllm:num_requests_running, _waiting,
    # kv_cache_usage_perc): sequences generating, requests queued, share of the KV cache in use (0-1).
    engine_running: float | None = None
    engine_waiting: float | None = None
    engine_kv_cache_usage: float | None = None


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


# --------------------------------------------------------------------------- run events
# What happened during a run, one dataclass per kind. events.jsonl holds one {"t_s", "kind", "detail"} line
# per event: `kind` is the class's `kind`, `detail` its fields (harness.rundir writes and reads them).
# Fields a producer does not know are None; every producer of a kind writes the same keys.


@dataclass(frozen=True)
class ReplicaStarted:
    """A replica's process, container or pod was started."""

    kind: ClassVar[str] = "replica_started"
    replica: str
    # Where it runs, as far as the target knows: a local process, a container, a pod on a node.
    pid: int | None = None
    port: int | None = None
    container: str | None = None
    container_id: str | None = None
    node: str | None = None
    # Local replicas: the model store they read, and whether it is mounted read-only for them.
    model_store: str | None = None
    model_store_read_only: bool | None = None


@dataclass(frozen=True)
class ReplicaReady:
    """A replica passed its readiness probe for the first time (or again, after being unready)."""

    kind: ClassVar[str] = "replica_ready"
    replica: str
    startup_s: float | None = None


@dataclass(frozen=True)
class ReplicaUnready:
    """A ready replica failed enough consecutive readiness probes to leave the load."""

    kind: ClassVar[str] = "replica_unready"
    replica: str
    failed_probes: int


@dataclass(frozen=True)
class ReplicaStopped:
    """A replica was stopped by the harness or its controller (scale-down, end of run)."""

    kind: ClassVar[str] = "replica_stopped"
    replica: str
    exit_code: int | None = None
    container: str | None = None
    # Kubernetes: "deleted" (terminating) or "gone" (vanished from the listing).
    reason: str | None = None


@dataclass(frozen=True)
class ReplicaCrashed:
    """A replica died on its own, or could not be started."""

    kind: ClassVar[str] = "replica_crashed"
    replica: str
    exit_code: int | None = None
    # Why, as the platform says it ("Error", "OOMKilled"); `error` when it could not be started at all.
    reason: str | None = None
    error: str | None = None
    oom_killed: bool | None = None
    restarts: int | None = None
    container: str | None = None
    log_tail: str | None = None
    # The scenario's fault killed it (stages[].faults): the experiment, not a reason to doubt the stage.
    injected: bool | None = None


@dataclass(frozen=True)
class ReplicaRestarting:
    """A crashed replica will be started again after a back-off, as the kubelet restarts a container."""

    kind: ClassVar[str] = "replica_restarting"
    replica: str
    backoff_s: float
    restarts: int


@dataclass(frozen=True)
class FaultInjected:
    """A fault of the scenario (stages[].faults) hit a replica; `error` when it could not be injected."""

    kind: ClassVar[str] = "fault_injected"
    stage: str
    action: str
    replica: str | None
    pause_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class FaultEnded:
    """A paused replica was resumed."""

    kind: ClassVar[str] = "fault_ended"
    stage: str
    action: str
    replica: str


@dataclass(frozen=True)
class MetricProposal:
    """One metric's reading at an autoscaler sync and the replicas it proposes; replicas is None when the
    metric could not be computed (reason says why) or the controller does not tell (an HPA's status)."""

    metric: str
    # Utilization percent for Utilization targets, else the per-pod average.
    current_value: float | None = field(metadata={"json": "current"})
    target_value: float | None = field(metadata={"json": "target"})
    replicas: int | None
    reason: str


@dataclass(frozen=True)
class _ReplicaCountDecision:
    from_replicas: int = field(metadata={"json": "from"})
    to_replicas: int = field(metadata={"json": "to"})
    # Who decided: "harness" (the local autoscaler) or "hpa" (the cluster's HorizontalPodAutoscaler).
    source: str = "harness"
    reason: str = ""
    # The bound that cut the proposal short ("maxReplicas", a scaling policy), when one did.
    limited_by: str | None = None
    proposals: tuple[MetricProposal, ...] = ()


@dataclass(frozen=True)
class AutoscalerSync(_ReplicaCountDecision):
    """One sync of the local autoscaler, whether or not it changed the replica count."""

    kind: ClassVar[str] = "autoscaler_sync"


@dataclass(frozen=True)
class ScaleDecision(_ReplicaCountDecision):
    """The autoscaler changed the desired replica count from -> to."""

    kind: ClassVar[str] = "scale_decision"


@dataclass(frozen=True)
class RunWarning:
    """Something the reader of the report must know that did not stop the run."""

    kind: ClassVar[str] = "warning"
    source: str
    error: str
    hint: str | None = None


@dataclass(frozen=True)
class ScrapeFailed:
    """A replica's /metrics could not be read."""

    kind: ClassVar[str] = "scrape_failed"
    replica: str
    url: str
    error: str | None = None


@dataclass(frozen=True)
class ImageBuilt:
    """The service's image was built (or an identical one reused)."""

    kind: ClassVar[str] = "image_built"
    image: str
    size_bytes: int | None
    build_s: float
    reused: bool


@dataclass(frozen=True)
class ImagePushed:
    """A local image was pushed to the target's registry; the replicas pull it by digest (`reference`)."""

    kind: ClassVar[str] = "image_pushed"
    image: str
    reference: str
    push_s: float


@dataclass(frozen=True)
class ImageLoaded:
    """A locally built image was copied onto a cluster node."""

    kind: ClassVar[str] = "image_loaded"
    image: str
    node: str
    imported: bool
    load_s: float


@dataclass(frozen=True)
class ContainersRemoved:
    """Containers an earlier run left behind were removed before this one started."""

    kind: ClassVar[str] = "containers_removed"
    reason: str
    containers: tuple[str, ...]


@dataclass(frozen=True)
class KindClusterUsed:
    """The run's kind cluster, created now or reused."""

    kind: ClassVar[str] = "kind_cluster"
    cluster: str
    created: bool


@dataclass(frozen=True)
class NamespaceCreated:
    """The run created its Kubernetes namespace (and so deletes it at the end)."""

    kind: ClassVar[str] = "namespace_created"
    namespace: str


@dataclass(frozen=True)
class ObjectApplied:
    """A Kubernetes object of the run was applied."""

    kind: ClassVar[str] = "object_applied"
    object_kind: str = field(metadata={"json": "kind"})
    name: str


@dataclass(frozen=True)
class LoadgenLogResumed:
    """The log stream of an in-cluster load generator pod broke after `records_read` records and was followed
    again from its start: those were skipped, the rest read, none lost."""

    kind: ClassVar[str] = "loadgen_log_resumed"
    pod: str
    cause: str
    records_read: int


@dataclass(frozen=True)
class UnknownEvent:
    """An event of a kind this version does not know (an older or newer harness wrote it), kept as read."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


Event = (
    ReplicaStarted
    | ReplicaReady
    | ReplicaUnready
    | ReplicaStopped
    | ReplicaCrashed
    | ReplicaRestarting
    | FaultInjected
    | FaultEnded
    | AutoscalerSync
    | ScaleDecision
    | RunWarning
    | ScrapeFailed
    | ImageBuilt
    | ImagePushed
    | ImageLoaded
    | ContainersRemoved
    | KindClusterUsed
    | NamespaceCreated
    | ObjectApplied
    | LoadgenLogResumed
    | UnknownEvent
)
EVENT_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        ReplicaStarted,
        ReplicaReady,
        ReplicaUnready,
        ReplicaStopped,
        ReplicaCrashed,
        ReplicaRestarting,
        FaultInjected,
        FaultEnded,
        AutoscalerSync,
        ScaleDecision,
        RunWarning,
        ScrapeFailed,
        ImageBuilt,
        ImagePushed,
        ImageLoaded,
        ContainersRemoved,
        KindClusterUsed,
        NamespaceCreated,
        ObjectApplied,
        LoadgenLogResumed,
    )
}
# Where events go while a run records them: the run stamps the time and appends them to events.jsonl.
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class RunEvent:
    """One event at one moment (seconds since the epoch), as events.jsonl holds it."""

    t_s: float
    detail: Event

    @property
    def kind(self) -> str:
        return self.detail.kind


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


# --------------------------------------------------------------------------- run metadata


@dataclass(frozen=True)
class CpuPlacement:
    """Which CPUs the load generator gets and which all replicas share; `shared` when the two sets overlap."""

    loadgen_cpus: tuple[int, ...]
    replica_cpus: tuple[int, ...]
    shared: bool
    # Cores the replicas were assumed to need: their requests, or one core each without a request.
    replica_cores_needed: float
    reason: str


@dataclass(frozen=True)
class MachineInfo:
    """The machine the harness ran on."""

    hostname: str | None = None
    platform: str | None = None
    cpus: int | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class RunMetadata:
    """metadata.json: what ran where (versions, machine, source revisions, CPU placement) and how it ended.

    Written when the run starts and again when it ends; every field may be missing from an older or an
    interrupted run's file, so each is optional.
    """

    run_id: str | None = None
    scenario: str | None = None
    harness_version: str | None = None
    git_commit: str | None = None
    service_git_commit: str | None = None
    # Package -> installed version (None: not installed).
    versions: dict[str, str | None] = field(default_factory=dict)
    python: str | None = None
    machine: MachineInfo | None = None
    target: str | None = None
    started_at: str | None = None
    cpu_placement: CpuPlacement | None = None
    exporter_url: str | None = None
    ended_at: str | None = None
    interrupted: bool | None = None
    error: str | None = None
    test_start_s: float | None = None
    load_ended_s: float | None = None
    warnings: list[str] = field(default_factory=list)


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


# Streamed requests' figures recorded as histograms (ClientInterval.ttft_hdr ...) and kept per stage
# (StageResult.ttft ...): time to first token, every inter-token gap, time per output token.
STREAM_FIGURES: tuple[str, ...] = ("ttft", "itl", "tpot")


def stream_shortfall_key(figure: str, q: float) -> str:
    """The `StageResult.sample_shortfalls` key of a streamed figure's percentile: "ttft p99"."""
    return f"{figure} {percentile_key(q)}"


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
    # Answers whose body was checked, and those that disagreed; None when nothing was checked.
    checked: int = 0
    mismatches: int = 0
    mismatch_rate: float | None = None
    # Requests sent as bad input that ended, and those answered 5xx or not at all; None when none was sent.
    bad_inputs: int = 0
    bad_input_5xx: int = 0
    bad_input_5xx_rate: float | None = None
    # Bad-input requests answered 2xx: the service took them as valid (a warning, not an objective).
    bad_input_accepted: int = 0
    # Replicas that died during the stage (under a bad-input mix, that fails bad_input_5xx_rate).
    crashed_replicas: list[str] = field(default_factory=list)
    # What the failed requests got back, a few distinct short samples per kind of error (as `errors`' keys).
    error_samples: dict[str, list[str]] = field(default_factory=dict)
    # Streamed requests: percentiles of time to first token, of every inter-token gap and of time per output
    # token (keys as `latency`), their tokens, and those that met each goodput objective's limits (by key).
    streamed: int = 0
    ttft: dict[str, PercentileEstimate] = field(default_factory=dict)
    itl: dict[str, PercentileEstimate] = field(default_factory=dict)
    tpot: dict[str, PercentileEstimate] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    output_tokens_squares: int = 0
    good_requests: dict[str, int] = field(default_factory=dict)
    # Each named request's figures in the stage (`requests:`), by name: its own counts, errors, latency and streamed
    # figures; the stage's window, replicas and validity. Empty without `requests:` and in older verdicts.
    by_request: dict[str, StageResult] = field(default_factory=dict)


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
    # The unit of measured, threshold, ci_low and ci_high: the one the metric's name ends with ("ms", "rps",
    # "s"; "fraction" for error_rate). Verdicts written before schema version 2 leave it empty.
    unit: str = ""
    # The named request it judged alone (`request:` of the objective); None: every request of the stage.
    request: str | None = None


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
class Bottleneck:
    """A likely cause of a stage's failure, warning or knee, with its evidence (harness.analysis.diagnosis)."""

    stage: str
    # Why the stage was examined: "FAIL", "WARN" or "knee".
    examined_for: str
    # failing_requests, loadgen_bound, cpu_bound, load_shedding, cold_start, periodic_stalls, batching_wait, network,
    # unexplained
    cause: str
    evidence: str


# Version 2 added bottlenecks, schema_version, run_id, scenario_name and each objective result's unit, and
# faults. Version 3 added each stage's figures per named request (StageResult.by_request) and the request an
# objective result judged.
VERDICT_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class FaultImpact:
    """What one injected fault did: errors while it lasted, how long the service took to recover, and
    whether the stage's objectives held through it (the surviving replicas carried the load)."""

    stage: str
    action: str
    replica: str | None
    # Seconds into the stage.
    at_s: float
    # From the fault until the hit replica served again (or the stage's end when it never did).
    requests: int
    failures: int
    # Seconds from the fault until the replica was ready again; None when it was not within the run.
    recovered_s: float | None
    objectives_held: bool | None
    # Why the fault could not be injected (no such ready replica, the platform refused).
    error: str | None = None


@dataclass(frozen=True)
class Leftover:
    """What a target leaves outside the harness's processes, for the run's watchdog and `harness cleanup` to remove
    should the harness die: `kind` names its remover in harness.cleanup ("docker": the run's containers;
    "kubernetes": its objects in `namespace`; "kind": the kind `cluster` it created); the other fields are what that
    remover needs. Sent to the watchdog and kept in kind's owner records as JSON (rundir.leftover_to_json)."""

    kind: str
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    cluster: str | None = None
    kind_binary: str | None = None


@dataclass(frozen=True)
class Probe:
    """One probe of the sweep: the arrival rate tried and whether every objective passed (None: inconclusive)."""

    rate_rps: float
    passed: bool | None


@dataclass(frozen=True)
class SweepResult:
    """The outcome of a sweep: the highest rate proven sustainable and the bracket around the true maximum."""

    # The highest passing rate below the lowest failing one; None when no probe passed.
    max_sustainable_rps: float | None
    bracket_low: float | None
    # The lowest failing rate; None when no probe failed (the maximum is at least bracket_low).
    bracket_high: float | None
    probes: tuple[Probe, ...]
    reason: str


@dataclass(frozen=True)
class SweepProbeRecord:
    """One probe of `harness sweep` as run: its rate and length, the verdict's status and its run directory."""

    replicas: int
    rate_rps: float
    duration_s: float
    status: str
    achieved_rps: float | None
    run_dir: str


@dataclass(frozen=True)
class SweepSummary:
    """sweep.json: every replica count's search, the scaling efficiency between them and every probe."""

    sweep_id: str
    # The first (or only) replica count's search, for a single-count sweep's readers.
    result: SweepResult
    by_replicas: dict[str, SweepResult]
    scaling_efficiency: float | None
    probes: tuple[SweepProbeRecord, ...]


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
    # Which verdict.json layout this is (VERDICT_SCHEMA_VERSION when written now; files without one are 1),
    # and which run of which scenario it judges (None in files written before version 2).
    schema_version: int = 1
    run_id: str | None = None
    scenario_name: str | None = None
    bottlenecks: list[Bottleneck] = field(default_factory=list)
    faults: list[FaultImpact] = field(default_factory=list)
    # The load generator's own overhead (its worst process); None when not measured (older runs, in-cluster
    # workers that could not measure it).
    loadgen_overhead: LoadgenOverhead | None = None


# --------------------------------------------------------------------------- JSON round trip


def to_json_dict(value: Any) -> Any:
    """Turn a dataclass tree into JSON-ready dicts, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_json_key(f): to_json_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_json_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_dict(v) for v in value]
    return value


def _json_key(f: dataclasses.Field[Any]) -> str:
    # A field whose JSON key is a Python keyword or clashes with a class attribute names it in its metadata.
    return str(f.metadata.get("json", f.name))


def _convert(hint: Any, raw: Any, ignore_unknown: bool = False) -> Any:
    if raw is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], raw, ignore_unknown) if len(options) == 1 else raw
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v, ignore_unknown) for v in raw]
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, ignore_unknown) for v in raw)
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _convert(item, v, ignore_unknown) for k, v in raw.items()}
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(raw)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json_dict(hint, raw, ignore_unknown=ignore_unknown)
    if hint is float and isinstance(raw, int):
        return float(raw)
    return raw


def from_json_dict(cls: type[T], data: dict[str, Any], *, ignore_unknown: bool = False) -> T:
    """Rebuild a dataclass (recursively) from `to_json_dict` output; unknown keys are an error unless
    `ignore_unknown` (records an older or newer harness wrote, whose extra keys this version does not use)."""
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = {_json_key(f): f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown and not ignore_unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    kwargs = {names[key]: _convert(hints[names[key]], raw, ignore_unknown) for key, raw in data.items() if key in names}
    return cls(**kwargs)
