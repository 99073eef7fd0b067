"""The load plan: everything a load generator process needs to run a scenario's load, built once by the harness
(`build_load_plan`), written as JSON (`LoadPlan.to_json`) and parsed once by each generator (`LoadPlan.from_json`),
on this machine (harness.load.runner) or in a pod (charts/loadgen)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.config import ArrivalKind, RequestConfig, TlsConfig
from harness.errors import ConfigError
from harness.load.arrivals import parse_trace, trace_gaps
from harness.model import RequestLimits

if TYPE_CHECKING:
    from harness.config import Scenario

# Upper bound on the drain after the last stage (also bounded by the request timeout).
DRAIN_S = 5.0


@dataclass(frozen=True)
class StageSpec:
    """The parts of a scenario stage the load generator needs."""

    name: str
    duration_s: float
    users: int | None = None
    spawn_rate: float | None = None
    arrival_rate_rps: float | None = None
    arrival: ArrivalKind = "poisson"
    burstiness: float = 1.0
    # arrival trace: the recorded timestamps (seconds), read by the harness so the generators need no file.
    trace_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class PayloadPlan:
    """Where the bodies of the one JSON POST come from when the scenario has no `requests:`."""

    source: Literal["digits", "jsonl"] = "digits"
    file: str | None = None
    batch_rows: int = 1
    malformed_fraction: float = 0.0


@dataclass(frozen=True)
class LoadPlan:
    """What one load generator process runs: the stages, what to send, where its replicas and records are."""

    stages: tuple[StageSpec, ...]
    # Processes sharing the load (each sends 1/processes of an open stage's rate), and this one's number.
    processes: int
    process: int
    endpoint_path: str
    # The file of ready replica base URLs the harness keeps current (harness.load.runner.EndpointPublisher).
    endpoints_file: str
    # Where this process appends its ClientInterval records (intervals-<pid>.jsonl).
    intervals_dir: str
    interval_s: float
    request_timeout_s: float
    drain_s: float
    max_in_flight: int
    seed: int
    payload: PayloadPlan = field(default_factory=PayloadPlan)
    user_locustfile: str | None = None
    # Header values stay `${NAME}`: the load process reads them from its own environment.
    requests: tuple[RequestConfig, ...] | None = None
    # Per request name, the reference answers by body key (harness.load.reference_answers).
    alone_answers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # How https URLs are checked (the external target); file paths only, never their contents.
    tls: TlsConfig = field(default_factory=TlsConfig)
    # The per-request limits of the scenario's goodput objectives: streamed requests meeting each are counted.
    goodput_limits: tuple[RequestLimits, ...] = ()

    @property
    def planned_duration_s(self) -> float:
        """How long the generator runs: every stage, then the drain."""
        return total_duration_s(self.stages) + self.drain_s

    def to_json(self) -> str:
        return json.dumps(
            {
                "stages": [vars(stage) for stage in self.stages],
                "processes": self.processes,
                "process": self.process,
                "endpoint_path": self.endpoint_path,
                "endpoints_file": self.endpoints_file,
                "intervals_dir": self.intervals_dir,
                "interval_s": self.interval_s,
                "request_timeout_s": self.request_timeout_s,
                "drain_s": self.drain_s,
                "max_in_flight": self.max_in_flight,
                "seed": self.seed,
                "payload": vars(self.payload),
                "user_locustfile": self.user_locustfile,
                "requests": None
                if self.requests is None
                else [request.model_dump(mode="json") for request in self.requests],
                "alone_answers": self.alone_answers,
                "tls": self.tls.model_dump(mode="json"),
                "goodput_limits": [vars(limits) for limits in self.goodput_limits],
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        data = json.loads(text)
        requests = data.get("requests")
        return cls(
            stages=tuple(
                StageSpec(**{**stage, "trace_s": tuple(stage.get("trace_s") or ())}) for stage in data["stages"]
            ),
            processes=int(data["processes"]),
            process=int(data["process"]),
            endpoint_path=data["endpoint_path"],
            endpoints_file=data["endpoints_file"],
            intervals_dir=data["intervals_dir"],
            interval_s=float(data["interval_s"]),
            request_timeout_s=float(data["request_timeout_s"]),
            drain_s=float(data["drain_s"]),
            max_in_flight=int(data["max_in_flight"]),
            seed=int(data["seed"]),
            payload=PayloadPlan(**data.get("payload") or {}),
            user_locustfile=data.get("user_locustfile"),
            requests=None if requests is None else tuple(RequestConfig.model_validate(r) for r in requests),
            alone_answers=data.get("alone_answers") or {},
            tls=TlsConfig.model_validate(data.get("tls") or {}),
            goodput_limits=tuple(RequestLimits(**limits) for limits in data.get("goodput_limits") or ()),
        )


def total_duration_s(stages: Sequence[StageSpec]) -> float:
    """Planned length of the whole test."""
    return sum(stage.duration_s for stage in stages)


def stage_specs(scenario: Scenario, *, with_traces: bool = False) -> tuple[StageSpec, ...]:
    """The load generator's view of the scenario's stages; `with_traces` reads their trace files (`read_trace`)."""
    return tuple(
        StageSpec(
            name=stage.name,
            duration_s=stage.duration_s,
            users=stage.users,
            spawn_rate=stage.spawn_rate,
            arrival_rate_rps=stage.arrival_rate_rps,
            arrival=stage.arrival,
            burstiness=stage.burstiness or 1.0,
            trace_s=read_trace(stage.trace, f"stages[{index}].trace")
            if with_traces and stage.trace is not None
            else (),
        )
        for index, stage in enumerate(scenario.stages)
    )


def read_trace(path: Path, where: str) -> tuple[float, ...]:
    """A trace file's arrival timestamps (`arrivals.parse_trace`), or a ConfigError naming `where` and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{where} '{path}': cannot read ({reason})") from error
    try:
        timestamps = parse_trace(text)
        trace_gaps(timestamps)
    except ValueError as error:
        raise ConfigError(f"{where} '{path}': {error}") from None
    return timestamps


def drain_s(scenario: Scenario) -> float:
    """After the last stage: time for outstanding requests to finish and be recorded."""
    return min(scenario.load.request_timeout_s, DRAIN_S)


def planned_duration_s(scenario: Scenario) -> float:
    """How long a load generator runs the scenario: every stage, then the drain."""
    return total_duration_s(stage_specs(scenario)) + drain_s(scenario)


def build_load_plan(
    scenario: Scenario,
    *,
    endpoints_file: Path,
    intervals_dir: Path,
    processes: int | None = None,
    payload_file: Path | None = None,
    alone_answers: Mapping[str, Mapping[str, Any]] | None = None,
) -> LoadPlan:
    """The plan of a scenario's load. In a cluster the paths are the pod's, `processes` the worker pods and
    `payload_file` where the pod finds payload.file."""
    payload = scenario.payload
    file = payload_file if payload_file is not None else payload.file
    return LoadPlan(
        stages=stage_specs(scenario, with_traces=True),
        processes=processes or scenario.load.processes,
        process=0,
        endpoint_path=scenario.service.endpoint,
        endpoints_file=str(endpoints_file),
        intervals_dir=str(intervals_dir),
        interval_s=scenario.metrics.interval_s,
        request_timeout_s=scenario.load.request_timeout_s,
        drain_s=drain_s(scenario),
        max_in_flight=scenario.load.max_in_flight,
        seed=scenario.load.seed,
        payload=PayloadPlan(
            source=payload.source,
            file=str(file) if file else None,
            batch_rows=payload.batch_rows,
            malformed_fraction=payload.malformed_fraction,
        ),
        user_locustfile=None if scenario.load.locustfile is None else str(scenario.load.locustfile),
        requests=None if scenario.requests is None else tuple(scenario.requests),
        alone_answers=alone_answers or {},
        tls=scenario.target.tls,
        goodput_limits=goodput_limits(scenario),
    )


def goodput_limits(scenario: Scenario) -> tuple[RequestLimits, ...]:
    """The distinct per-request limits of the scenario's goodput objectives."""
    found = [o.request_limits for o in scenario.objectives if o.request_limits is not None]
    return tuple({limits.key: limits for limits in found}.values())
