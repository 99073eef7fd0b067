"""Tests for harness.analysis.stages: per-stage figures and every validity rule."""

from __future__ import annotations

import dataclasses

import pytest
from _records import RUN_START_S, interval
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.stages import CPU_TIME_TICK_S, loadgen_cores_at_least, summarize_stages
from harness.config import ValidityConfig
from harness.model import (
    ClientInterval,
    ReplicaCount,
    ReplicaCrashed,
    ReplicaStopped,
    RequestTally,
    RunEvent,
    StageResult,
    StageWindow,
    percentile_key,
)

VALIDITY = ValidityConfig()


def window(name: str = "steady", start_s: float = 0.0, duration_s: float = 10.0, **load: float | None) -> StageWindow:
    users = load.get("users")
    return StageWindow(
        name=name,
        start_s=RUN_START_S + start_s,
        end_s=RUN_START_S + start_s + duration_s,
        judged=True,
        users=None if users is None else int(users),
        arrival_rate_rps=load.get("arrival_rate_rps"),
    )


def steady_intervals(
    per_second: int = 100, seconds: int = 10, users: int = 10, **kwargs: object
) -> list[ClientInterval]:
    """`per_second` successes per second, latencies spread evenly over 10..30 ms, from `users` running users
    (the default window's)."""
    latencies = [0.010 + 0.020 * i / per_second for i in range(per_second)]
    return [interval(float(t), latencies, users=users, **kwargs) for t in range(seconds)]  # type: ignore[arg-type]


def summarize(
    intervals: list[ClientInterval],
    windows: list[StageWindow] | None = None,
    counts: list[ReplicaCount] | None = None,
    events: list[RunEvent] | None = None,
    validity: ValidityConfig = VALIDITY,
    **kwargs: object,
) -> list[StageResult]:
    return summarize_stages(
        windows or [window(users=10)],
        intervals,
        counts or [],
        events or [],
        validity,
        **kwargs,  # type: ignore[arg-type]
    )


def test_valid_stage_figures() -> None:
    counts = [ReplicaCount(t_s=RUN_START_S + t, desired=3, ready=r) for t, r in [(-1, 1), (1, 2), (5, 3), (13, 1)]]
    intervals = steady_intervals(seconds=12, loadgen_cpu_cores=0.3, users=10)
    intervals[3] = interval(3.0, [0.02] * 90, failures=10, errors={"http_503": 10}, loadgen_cpu_cores=0.5)
    (stage,) = summarize(intervals, [window(duration_s=12.0, users=10)], counts=counts)
    assert stage.invalid_reasons == []
    assert stage.requests == 1200
    assert stage.failures == 10
    assert stage.error_rate == pytest.approx(10 / 1200)
    assert stage.errors == {"http_503": 10}
    assert stage.achieved_rps == pytest.approx(100.0)
    assert stage.duration_s == pytest.approx(12.0)
    assert stage.offered_users == 10 and stage.offered_rps is None
    assert set(stage.latency) == {"p50", "p95", "p99"}
    p95 = stage.latency["p95"]
    assert p95.samples == 1190
    assert p95.value_s is not None and 0.028 <= p95.value_s <= 0.030
    assert p95.ci_low_s is not None and p95.ci_high_s is not None
    assert stage.replicas_min == 2 and stage.replicas_max == 3
    # 0.5 cores read over 1 s: at least 0.49 (one 10 ms tick of CPU time less).
    assert stage.loadgen_cpu_max_cores == pytest.approx(0.49)


def test_intervals_belong_to_stages_by_their_stage_field() -> None:
    windows = [window("warmup", 0.0, 5.0, users=2), window("steady", 5.0, 5.0, users=10)]
    # A warm-up interval recorded late (after the window boundary) still belongs to warm-up.
    intervals = [
        interval(4.5, [0.01] * 7, stage="warmup"),
        interval(5.5, [0.01] * 11, stage="steady"),
        interval(6.0, [0.01] * 3, stage="not-a-stage"),
    ]
    warmup, steady = summarize(intervals, windows)
    assert warmup.requests == 7 and steady.requests == 11
    assert warmup.achieved_rps == pytest.approx(7 / 5.0)


def test_extra_percentiles_use_the_pq_format() -> None:
    (stage,) = summarize(steady_intervals(), percentiles=(99.9, 90))
    assert set(stage.latency) == {"p50", "p90", "p95", "p99", "p99.9"}
    assert percentile_key(99.9) == "p99.9" and percentile_key(95.0) == "p95"


# --------------------------------------------------------------------------- (d) nothing completed


def test_no_requests_is_invalid_and_has_no_error_rate() -> None:
    (stage,) = summarize([])
    assert stage.requests == 0
    assert stage.error_rate is None
    assert stage.achieved_rps == 0.0
    assert stage.latency["p95"].value_s is None
    assert "no requests completed in this stage" in stage.invalid_reasons
    assert stage.replicas_min is None and stage.loadgen_cpu_max_cores is None


# --------------------------------------------------------------------------- (a) samples per percentile


def test_too_few_samples_names_percentile_samples_and_minimum() -> None:
    (stage,) = summarize(steady_intervals(per_second=50))  # 500 samples: enough for p95 (200), not p99 (1000)
    assert stage.sample_shortfalls == {
        "p99": "too few samples for p99: 500 successful requests, need at least 1000 (min_tail_samples=10)"
    }
    assert stage.invalid_reasons == [], "a p99 shortfall does not invalidate the stage's other measurements"


def test_judged_percentiles_limit_the_sample_rule() -> None:
    (stage,) = summarize(steady_intervals(per_second=50), judged_percentiles=(95,))
    assert stage.sample_shortfalls == {}
    assert "p99" in stage.latency  # still computed for the report
    (stage,) = summarize(steady_intervals(per_second=50), judged_percentiles=(99.9,))
    assert list(stage.sample_shortfalls) == ["p99.9"]
    assert "p99.9" in stage.latency


def test_failures_do_not_count_as_latency_samples() -> None:
    intervals = [interval(float(t), [0.01] * 50, failures=60) for t in range(10)]
    (stage,) = summarize(intervals, judged_percentiles=(95,))
    assert stage.requests == 1100
    assert stage.sample_shortfalls == {}
    (stage,) = summarize(intervals, judged_percentiles=(99,))
    assert "500 successful requests" in stage.sample_shortfalls["p99"]


# --------------------------------------------------------------------------- (b) load generator bottleneck


def test_loadgen_cpu_saturation_in_any_interval() -> None:
    intervals = steady_intervals(loadgen_cpu_cores=0.5)
    intervals[7] = interval(7.0, [0.01] * 100, loadgen_cpu_cores=0.95, process=0, users=10)
    (stage,) = summarize(intervals)
    assert len(stage.invalid_reasons) == 1
    assert "CPU-bound" in stage.invalid_reasons[0] and "0.95 cores" in stage.invalid_reasons[0]
    relaxed = ValidityConfig(loadgen_cpu_saturation=1.0)
    (stage,) = summarize(intervals, validity=relaxed)
    assert stage.invalid_reasons == []


def test_a_short_interval_charged_one_clock_tick_is_not_cpu_saturation() -> None:
    """A CI run's stage went INCONCLUSIVE on a 6 ms first interval that read 1.69 cores: one 10 ms tick."""
    intervals = steady_intervals(loadgen_cpu_cores=0.03)
    intervals[0] = interval(0.0, [0.01] * 100, length_s=0.006, loadgen_cpu_cores=1.69, process=0, users=10)
    (stage,) = summarize(intervals)
    assert stage.invalid_reasons == []
    assert stage.loadgen_cpu_max_cores is not None and stage.loadgen_cpu_max_cores < 0.05
    # Two ticks in 6 ms are more than one core: that a process cannot have used unless it ran two threads at once.
    intervals[0] = interval(0.0, [0.01] * 100, length_s=0.006, loadgen_cpu_cores=3.4, process=0, users=10)
    (stage,) = summarize(intervals)
    assert "CPU-bound" in stage.invalid_reasons[0] and "3.40 cores" in stage.invalid_reasons[0]


@settings(max_examples=200, deadline=None)
@given(
    cores=st.floats(min_value=0.0, max_value=4.0, allow_nan=False),
    length_s=st.floats(min_value=0.001, max_value=30.0, allow_nan=False),
)
def test_the_cores_an_interval_surely_used_are_at_most_one_tick_below_what_it_read(
    cores: float, length_s: float
) -> None:
    measured = interval(0.0, length_s=length_s, loadgen_cpu_cores=cores)
    at_least = loadgen_cores_at_least(measured)
    rounding = 0.5e-4  # to four decimals, as the verdict keeps it
    assert at_least is not None and 0.0 <= at_least <= cores + rounding
    assert cores - at_least <= CPU_TIME_TICK_S / (measured.t_end_s - measured.t_start_s) + rounding
    if length_s >= 1.0:
        assert cores - at_least <= 0.01 + rounding


def test_missing_loadgen_process_is_invalid() -> None:
    intervals = steady_intervals(process=1) + steady_intervals(process=2)
    (stage,) = summarize(intervals, loadgen_processes=2)
    assert stage.invalid_reasons == []
    (stage,) = summarize(intervals, loadgen_processes=3)
    assert stage.invalid_reasons == ["only 2 of 3 load-generator processes reported results for this stage"]


def test_a_process_that_stopped_before_the_stage_ended_is_invalid() -> None:
    # Process 1's test was stopped 2.3 s early (its clock started late while a master's ran on): its share of
    # the stage is missing, whatever the model.
    full, short = steady_intervals(process=0), steady_intervals(process=1)[:8]
    short.append(interval(7.7, [0.01] * 10, length_s=0.0, process=1, users=10))
    (stage,) = summarize(full + short, loadgen_processes=2)
    assert stage.invalid_reasons == ["load generator process 1 ran from 0.0 s to 8.0 s of the stage's 10.0 s"]


def test_a_process_that_started_late_is_invalid_and_one_interval_of_slack_is_not() -> None:
    late = [interval(float(t), [0.01] * 10, process=1, users=10) for t in range(3, 10)]
    (stage,) = summarize(steady_intervals(process=0) + late, loadgen_processes=2)
    assert stage.invalid_reasons == ["load generator process 1 ran from 3.0 s to 10.0 s of the stage's 10.0 s"]
    # A last interval with no answer of the stage's own (the next stage had begun when it was written) and a
    # clock a tenth of a second late are the recording's granularity, not a shortfall.
    granular = [interval(t + 0.1, [0.01] * 10, process=1, users=10) for t in range(0, 9)]
    (stage,) = summarize(steady_intervals(process=0) + granular, loadgen_processes=2)
    assert stage.invalid_reasons == []


def test_a_closed_stage_that_ran_fewer_users_than_planned_is_invalid() -> None:
    # Two processes: 5 + 5 users of the stage's 10 is the plan; a process whose users were stopped early is not.
    halves = steady_intervals(users=5, process=0) + steady_intervals(users=5, process=1)
    (stage,) = summarize(halves, loadgen_processes=2)
    assert stage.invalid_reasons == []
    stopped = steady_intervals(users=5, process=0) + steady_intervals(users=5, process=1)[:6]
    stopped += [interval(float(t), [], users=0, process=1) for t in range(6, 10)]
    (stage,) = summarize(stopped, loadgen_processes=2)
    assert stage.invalid_reasons == ["load generator ran 5 of the stage's 10 users in its second half"]


def test_a_ramp_in_the_first_half_of_a_closed_stage_is_not_a_shortfall() -> None:
    ramp = [interval(float(t), [0.01] * 10, users=min(10, 2 * t)) for t in range(10)]
    (stage,) = summarize(ramp)
    assert stage.invalid_reasons == []
    (stage,) = summarize(ramp, [window(users=12)])
    assert stage.invalid_reasons == ["load generator ran 10 of the stage's 12 users in its second half"]


def open_stage(scheduled: int, dropped: int, send_lag_max_s: float, rate_rps: float = 100.0) -> StageResult:
    """An open-model stage of 10 s at `rate_rps`; successes spread evenly over the seconds."""
    sent = scheduled - dropped
    intervals = [
        interval(
            float(t),
            [0.010 + 0.020 * i / 1000 for i in range(sent // 10)],
            offered_rps=rate_rps,
            scheduled=scheduled // 10,
            dropped=dropped // 10,
            send_lag_max_s=send_lag_max_s,
        )
        for t in range(10)
    ]
    (stage,) = summarize(intervals, [window(arrival_rate_rps=rate_rps)], judged_percentiles=())
    return stage


def test_open_model_on_schedule_is_valid() -> None:
    assert open_stage(scheduled=1000, dropped=0, send_lag_max_s=0.001).invalid_reasons == []


def test_open_model_poisson_noise_is_not_a_shortfall() -> None:
    # 10 rps x 10 s: Poisson counts vary by +-10, so 88 of 100 arrivals is noise, not a slow generator.
    assert open_stage(scheduled=880, dropped=0, send_lag_max_s=0.0, rate_rps=100.0).invalid_reasons != []
    intervals = [interval(float(t), [0.01] * 8, offered_rps=10.0, scheduled=8) for t in range(10)]
    (stage,) = summarize(intervals, [window(arrival_rate_rps=10.0)], judged_percentiles=())
    assert stage.invalid_reasons == []


def test_open_model_generator_that_did_not_schedule_is_invalid() -> None:
    reasons = open_stage(scheduled=800, dropped=0, send_lag_max_s=0.0).invalid_reasons
    assert reasons == ["load generator fell behind: scheduled 800 of 1000 arrivals (100 rps x 10.0 s)"]


def test_open_model_drops_while_lagging_are_the_generators_fault() -> None:
    # 5 ms late: above 10% of the mean latency (b3), below the stall floor (b4).
    reasons = open_stage(scheduled=1000, dropped=200, send_lag_max_s=0.005).invalid_reasons
    assert len(reasons) == 1
    assert "sent 800 of 1000 arrivals (200 dropped)" in reasons[0]
    assert "5.0 ms late" in reasons[0]


def test_open_model_drops_with_an_on_time_generator_mean_a_saturated_service() -> None:
    # The service held max_in_flight requests; the generator stayed on time: a valid, bad measurement.
    assert open_stage(scheduled=1000, dropped=200, send_lag_max_s=0.0005).invalid_reasons == []


def test_open_model_small_shortfall_within_tolerance() -> None:
    assert open_stage(scheduled=1000, dropped=40, send_lag_max_s=0.005).invalid_reasons == []


# --------------------------------------------------------------------------- (c) crashes


def test_replica_crash_inside_the_window_invalidates() -> None:
    events = [
        RunEvent(t_s=RUN_START_S + 4.0, detail=ReplicaCrashed("replica-1")),
        RunEvent(t_s=RUN_START_S + 20.0, detail=ReplicaCrashed("replica-2")),
        RunEvent(t_s=RUN_START_S + 5.0, detail=ReplicaStopped("replica-3")),
    ]
    (stage,) = summarize(steady_intervals(), events=events)
    assert stage.invalid_reasons == ["replica replica-1 crashed 4.0 s into the stage"]


# --------------------------------------------------------------------------- properties


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=19),
            st.integers(min_value=0, max_value=30),
            st.integers(min_value=0, max_value=10),
            st.sampled_from(["one", "two"]),
        ),
        max_size=30,
    )
)
@settings(max_examples=80, deadline=None)
def test_stage_totals_are_the_sums_of_their_intervals(rows: list[tuple[int, int, int, str]]) -> None:
    intervals = [
        interval(float(t), [0.001 * (1 + i) for i in range(ok)], failures=bad, stage=s) for t, ok, bad, s in rows
    ]
    windows = [window("one", 0.0, 10.0, users=1), window("two", 10.0, 10.0, users=2)]
    results = summarize(intervals, windows)
    for stage in results:
        own = [i for i in intervals if i.stage == stage.name]
        assert stage.requests == sum(i.requests for i in own)
        assert stage.failures == sum(i.failures for i in own)
        assert stage.achieved_rps == pytest.approx(stage.requests / 10.0)
        if stage.requests:
            assert stage.error_rate is not None and 0.0 <= stage.error_rate <= 1.0
        else:
            assert stage.error_rate is None
            assert "no requests completed in this stage" in stage.invalid_reasons
        for estimate in stage.latency.values():
            assert estimate.samples == stage.requests - stage.failures
            if estimate.value_s is not None and estimate.ci_low_s is not None:
                assert estimate.ci_low_s <= estimate.value_s
            if estimate.value_s is not None and estimate.ci_high_s is not None:
                assert estimate.value_s <= estimate.ci_high_s


def test_a_generator_stall_makes_only_the_percentiles_it_could_move_inconclusive() -> None:
    on_time = [
        interval(float(t), [0.03] * 100, offered_rps=100.0, scheduled=100, send_lag_max_s=0.002) for t in range(10)
    ]
    (stage,) = summarize(on_time, [window(arrival_rate_rps=100.0)], judged_percentiles=(95, 99))
    assert stage.invalid_reasons == [] and stage.sample_shortfalls == {}
    # 150 ms late at 100 rps: up to 15 arrivals delayed; p99 of 1000 samples has 10 above it, p95 has 50.
    stalled = [*on_time[:-1], interval(9.0, [0.03] * 100, offered_rps=100.0, scheduled=100, send_lag_max_s=0.15)]
    many = [interval(float(t), [0.03] * 300, offered_rps=300.0, scheduled=300) for t in range(10)]
    (stage,) = summarize(stalled, [window(arrival_rate_rps=100.0)], judged_percentiles=(95, 99))
    assert stage.invalid_reasons == [], "a stall does not invalidate the whole stage"
    assert "load generator stalled (sends up to 150.0 ms late" in stage.sample_shortfalls["p99"]
    assert "p95" not in stage.sample_shortfalls
    (stage,) = summarize(
        [*many[:-1], interval(9.0, [0.03] * 300, offered_rps=300.0, scheduled=300, send_lag_max_s=0.15)],
        [window(arrival_rate_rps=300.0)],
        judged_percentiles=(99,),
    )
    assert "load generator stalled" in stage.sample_shortfalls["p99"], "45 delayed of 30 above p99"


def test_checked_answers_and_bad_inputs_add_up_over_intervals_and_processes() -> None:
    intervals = [
        dataclasses.replace(
            record, checked=100, mismatches=t % 2, bad_inputs=10, bad_input_5xx=int(t == 3), bad_input_accepted=t % 3
        )
        for t, record in enumerate(steady_intervals(seconds=10))
    ]
    (result,) = summarize(intervals)
    assert (result.checked, result.mismatches, result.mismatch_rate) == (1000, 5, 0.005)
    assert (result.bad_inputs, result.bad_input_5xx, result.bad_input_5xx_rate) == (100, 1, 0.01)
    assert result.bad_input_accepted == 9


def test_no_checked_answers_means_no_rate_not_zero() -> None:
    (result,) = summarize(steady_intervals(seconds=10))
    assert result.mismatch_rate is None and result.bad_input_5xx_rate is None


# --------------------------------------------------------------------------- streamed requests


def streamed_interval(t_start_s: float, ttfts_s: list[float], gaps_s: list[float], tokens: int) -> ClientInterval:
    """An interval of len(ttfts_s) streams of `tokens` tokens, the first 60% of them good for ttft_ms<=250."""
    from harness.analysis.latency import LatencyHistogram

    ttft, itl, tpot = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for value in ttfts_s:
        ttft.record_s(value)
        tpot.record_s(0.02)
    for gap in gaps_s:
        itl.record_s(gap)
    base = interval(t_start_s, [0.5] * len(ttfts_s))
    return dataclasses.replace(
        base,
        streamed=len(ttfts_s),
        ttft_hdr=ttft.encode(),
        itl_hdr=itl.encode(),
        tpot_hdr=tpot.encode(),
        input_tokens=10 * len(ttfts_s),
        output_tokens=tokens * len(ttfts_s),
        output_tokens_squares=tokens * tokens * len(ttfts_s),
        good_requests={"ttft_ms<=250": int(0.6 * len(ttfts_s))},
    )


def test_streamed_figures_are_merged_per_stage_with_their_own_sample_rule() -> None:
    ttfts = [0.1 + 0.2 * i / 50 for i in range(50)]
    intervals = [streamed_interval(float(t), ttfts, [0.01, 0.03] * 50, tokens=101) for t in range(10)]
    (result,) = summarize(intervals, stream_percentiles={"ttft": [99.9], "itl": [95.0]})
    assert result.streamed == 500 and result.output_tokens == 50_500 and result.input_tokens == 5000
    assert result.output_tokens_squares == 500 * 101**2 and result.good_requests == {"ttft_ms<=250": 300}
    assert set(result.ttft) == {"p50", "p95", "p99", "p99.9"} and set(result.tpot) == {"p50", "p95", "p99"}
    p50 = result.ttft["p50"]
    assert p50.value_s == pytest.approx(0.196, rel=0.002) and p50.samples == 500  # rank 250: the 25th value
    assert result.itl["p95"].value_s == pytest.approx(0.03, rel=0.002) and result.itl["p95"].samples == 1000
    # ttft p99.9 needs 10,000 samples (min_tail_samples 10); itl p95 has its 1000; latency is judged apart.
    assert "ttft p99.9" in result.sample_shortfalls and "itl p95" not in result.sample_shortfalls
    assert "too few samples for ttft p99.9: 500" in result.sample_shortfalls["ttft p99.9"]


def test_a_stage_without_streams_has_no_streamed_figures() -> None:
    (result,) = summarize(steady_intervals(), stream_percentiles={"ttft": [99.0]})
    assert (result.streamed, result.ttft, result.itl, result.tpot, result.good_requests) == (0, {}, {}, {}, {})
    assert not any(key.startswith("ttft") for key in result.sample_shortfalls)


# --------------------------------------------------------------------------- named requests


def tally_of(record: ClientInterval) -> RequestTally:
    """A record's outcomes as one named request's tally."""
    return RequestTally(**{f.name: getattr(record, f.name) for f in dataclasses.fields(RequestTally)})


def test_each_named_request_gets_its_own_figures_and_the_stage_keeps_all_together() -> None:
    intervals = []
    for t in range(10):
        said = {"http_500": [f"worker {t % 3} died"]}
        slow = dataclasses.replace(interval(float(t), [0.2] * 30, failures=2), error_samples=said)
        fast = interval(float(t), [0.002] * 70)
        stage_total = interval(float(t), [0.2] * 30 + [0.002] * 70, failures=2, users=10)
        stage_total = dataclasses.replace(stage_total, error_samples=said)
        intervals.append(
            dataclasses.replace(stage_total, by_request={"predict": tally_of(slow), "health": tally_of(fast)})
        )
    (result,) = summarize(intervals)
    assert result.requests == 1020 and result.latency["p50"].value_s == pytest.approx(0.002, rel=0.01)
    predict, health = result.by_request["predict"], result.by_request["health"]
    assert (predict.requests, predict.failures, predict.errors) == (320, 20, {"http_500": 20})
    # What the failures got back stays with the request that got it (the first two distinct samples).
    assert predict.error_samples == result.error_samples == {"http_500": ["worker 0 died", "worker 1 died"]}
    assert health.error_samples == {}
    assert predict.error_rate == pytest.approx(20 / 320) and predict.achieved_rps == pytest.approx(32.0)
    assert predict.latency["p50"].value_s == pytest.approx(0.2, rel=0.01)
    assert health.latency["p95"].value_s == pytest.approx(0.002, rel=0.01) and health.failures == 0
    # The stage's load and validity are the requests' too; a request offers no rate of its own.
    assert predict.offered_rps is None and predict.replicas_min == result.replicas_min and not predict.by_request
    assert predict.invalid_reasons == result.invalid_reasons


def test_a_requests_figures_keep_its_own_sample_rule_and_the_stages_doubts() -> None:
    few = [
        dataclasses.replace(
            interval(float(t), [0.01] * 100, loadgen_cpu_cores=0.95, users=10),
            by_request={"rare": tally_of(interval(float(t), [0.05] * 2))},
        )
        for t in range(10)
    ]
    (result,) = summarize(few, judged_percentiles=[99.0])
    rare = result.by_request["rare"]
    assert "p99" in rare.sample_shortfalls and "p99" not in result.sample_shortfalls
    assert any("CPU-bound" in reason for reason in rare.invalid_reasons)


def test_records_without_named_requests_have_none() -> None:
    (result,) = summarize(steady_intervals())
    assert result.by_request == {}
