"""harness.analysis.diagnosis: each cause found in series that show it, and only there; the recorded run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.diagnosis import RunSeries, diagnose, stages_to_examine
from harness.analysis.stages import summarize_stages
from harness.config import ValidityConfig
from harness.model import (
    ClientInterval,
    ObjectiveResult,
    ReplicaCount,
    ReplicaReady,
    ReplicaSample,
    RunEvent,
    Saturation,
    ServerSample,
    StageResult,
    StageWindow,
    Status,
)
from tests.analysis._records import RUN_START_S, interval

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "run_recorded" / "verdict.json"
STAGE_S = 30


def _steady(
    latency_s: float = 0.02, rps: int = 50, spikes_every_s: int | None = None, **kwargs: object
) -> list[ClientInterval]:
    rng = np.random.default_rng(1)
    intervals = []
    for second in range(STAGE_S):
        latencies = list(latency_s * (1 + 0.2 * rng.random(rps)))
        if spikes_every_s is not None and second % spikes_every_s == 2:
            latencies[-5:] = [0.4] * 5
        intervals.append(interval(second, latencies, offered_rps=float(rps), **kwargs))  # type: ignore[arg-type]
    return intervals


def _stage(intervals: Sequence[ClientInterval]) -> StageResult:
    window = StageWindow("steady", RUN_START_S, RUN_START_S + STAGE_S, True, None, 50.0)
    (stage,) = summarize_stages([window], intervals, [], [], ValidityConfig())
    return stage


def _failed(stage: StageResult, status: Status = Status.FAIL) -> list[ObjectiveResult]:
    return [ObjectiveResult("latency_p99_ms <= 30", "latency_p99_ms", stage.name, status, 30.0, "max", 1, 1, 1, "")]


def _causes(
    intervals: Sequence[ClientInterval],
    *,
    server: Sequence[ServerSample] = (),
    replicas: Sequence[ReplicaSample] = (),
    counts: Sequence[ReplicaCount] = (),
    events: Sequence[RunEvent] = (),
    cpu_limit_cores: float | None = None,
) -> dict[str, str]:
    stage = _stage(intervals)
    found = diagnose(
        [stage],
        _failed(stage),
        None,
        RunSeries(intervals, server, replicas, counts, events),
        cpu_limit_cores=cpu_limit_cores,
    )
    return {b.cause: b.evidence for b in found}


def _server(duration_s: float, batch: float | None = None, rps: int = 50) -> list[ServerSample]:
    samples = []
    for second in (0, STAGE_S):
        n = float(second * rps)
        samples.append(
            ServerSample(
                t_s=RUN_START_S + second,
                replica="r1",
                ok=True,
                duration_sum_s=n * duration_s,
                duration_count=n,
                batch_size_sum=None if batch is None else n,
                batch_size_count=None if batch is None else n / batch,
            )
        )
    return samples


def test_a_healthy_looking_stage_is_unexplained_and_names_the_missing_series() -> None:
    causes = _causes(_steady())
    assert list(causes) == ["unexplained"]
    assert "replica CPU samples, server /metrics samples" in causes["unexplained"]


def test_cpu_at_its_limit() -> None:
    replicas = [ReplicaSample(RUN_START_S + t, "r1", True, cpu_cores=0.97) for t in range(1, STAGE_S)]
    assert "cpu_bound" in _causes(_steady(), replicas=replicas, cpu_limit_cores=1.0)
    assert "cpu_bound" not in _causes(_steady(), replicas=replicas, cpu_limit_cores=2.0)
    # without a limit, one full core is a single Python process's ceiling
    assert "one full core" in _causes(_steady(), replicas=replicas)["cpu_bound"]


def test_503_load_shedding() -> None:
    intervals = _steady(failures=3, errors={"http_503": 3})
    assert "http_503 x90" in _causes(intervals)["load_shedding"]
    assert "load_shedding" not in _causes(_steady(failures=3, errors={"http_500": 3}))


def test_cold_start_from_events_and_counts() -> None:
    events = [RunEvent(RUN_START_S + 12, ReplicaReady("r3"))]
    counts = [ReplicaCount(RUN_START_S, 3, 2), ReplicaCount(RUN_START_S + 12, 3, 3)]
    evidence = _causes(_steady(), events=events, counts=counts)["cold_start"]
    assert "r3 became ready 12.0 s into the stage" in evidence
    assert "below desired for 12 s" in evidence


def test_periodic_stalls_need_a_regular_period() -> None:
    evidence = _causes(_steady(spikes_every_s=5))["periodic_stalls"]
    assert "every 5.0 s" in evidence
    assert "periodic_stalls" not in _causes(_steady())


@given(st.lists(st.integers(min_value=0, max_value=STAGE_S - 1), min_size=3, max_size=8, unique=True))
@settings(max_examples=40, deadline=None)
def test_irregular_spikes_are_not_called_periodic(seconds: list[int]) -> None:
    ordered = sorted(seconds)
    gaps = np.diff(ordered)
    intervals = []
    for second in range(STAGE_S):
        latencies = [0.02] * 50
        if second in seconds:
            latencies[-5:] = [0.4] * 5
        intervals.append(interval(second, latencies, offered_rps=50.0))
    evidence = _causes(intervals).get("periodic_stalls")
    if evidence is not None:
        # only spike trains whose gaps agree within the tolerance are periodic (adjacent seconds merge)
        runs = [s for i, s in enumerate(ordered) if i == 0 or ordered[i - 1] != s - 1]
        run_gaps = np.diff(runs)
        assert len(runs) >= 3 and np.all(np.abs(run_gaps - np.median(run_gaps)) <= 0.3 * np.median(run_gaps))
    assert len(gaps) >= 2


def test_generator_bound_and_then_not_the_network() -> None:
    intervals = _steady(send_lag_max_s=0.2)
    causes = _causes(intervals, server=_server(0.002))
    assert "sends ran up to 200 ms late" in causes["loadgen_bound"]
    assert "network" not in causes
    assert "loadgen_bound" in _causes(_steady(loadgen_cpu_cores=0.97))


def test_batching_wait_and_network_from_server_durations() -> None:
    causes = _causes(_steady(0.02), server=_server(0.019, batch=1.1))
    assert "batches held 1.10 requests" in causes["batching_wait"]
    assert "network" not in causes
    assert "batching_wait" not in _causes(_steady(0.02), server=_server(0.019, batch=16))
    network = _causes(_steady(0.02), server=_server(0.004))["network"]
    assert "outside the server's own handling (4.0 ms" in network


def test_a_restarted_counter_is_not_a_negative_duration() -> None:
    server = _server(0.004)
    reset = [server[0], ServerSample(server[1].t_s, "r1", True, duration_sum_s=0.0, duration_count=0.0)]
    assert "network" not in _causes(_steady(0.02), server=reset)


def test_stages_examined_fail_warn_and_knee() -> None:
    stage = _stage(_steady())
    knee = Saturation(None, None, None, stage.achieved_rps, 0.02, None, "")
    assert stages_to_examine([stage], [], knee) == {"steady": "knee"}
    assert stages_to_examine([stage], _failed(stage, Status.WARN), None) == {"steady": "WARN"}
    assert stages_to_examine([stage], _failed(stage, Status.PASS), None) == {}


def test_recorded_run_blames_shedding_at_peak_and_the_new_replica_at_the_knee() -> None:
    bottlenecks = json.loads(RECORDED.read_text())["bottlenecks"]
    by_stage = {(b["stage"], b["cause"]): b for b in bottlenecks}
    assert by_stage[("peak", "load_shedding")]["examined_for"] == "FAIL"
    assert "http_503" in by_stage[("peak", "load_shedding")]["evidence"]
    assert ("step", "cold_start") in by_stage


def test_a_stage_whose_requests_mostly_fail_is_diagnosed_so_with_what_the_service_answered() -> None:
    # The BentoML example of issue 23: a bare JSON list posted where the service takes an object, answered 400.
    answered = '{"error":"1 validation error for Input: input_series Field required"}'
    failing = [
        interval(second, [], failures=7, errors={"http_400": 7}, error_samples={"http_400": [answered]})
        for second in range(STAGE_S)
    ]
    causes = _causes(failing)
    assert list(causes) == ["failing_requests"], causes
    assert causes["failing_requests"] == (f"210 of 210 requests failed: http_400 x210 (answered: '{answered}') (100%)")
    # Half of them is most of them; fewer is left to the other causes (and to the error_rate objective).
    half = [interval(second, [0.02] * 5, failures=5, errors={"timeout": 3, "http_500": 2}) for second in range(STAGE_S)]
    assert "150 of 300 requests failed: timeout x90; http_500 x60 (50%)" in _causes(half)["failing_requests"]
    few = [interval(second, [0.02] * 50, failures=1) for second in range(STAGE_S)]
    assert "failing_requests" not in _causes(few)
