"""A load process's records of its requests (harness.load.recording), without Locust: outcomes added up per stage and
per named request into one ClientInterval per stage, error kinds, latency from the intended send time, the
calibration's overhead."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.analysis.latency import LatencyHistogram
from harness.load.plan import StageSpec
from harness.load.recording import (
    DROPPED,
    IntervalRecorder,
    error_kind,
    loadgen_overhead,
    request_latency_s,
)
from harness.load.requests import CheckResult
from harness.load.streaming import StreamFigures
from harness.model import RequestLimits

STAGES = [
    StageSpec("closed", 5, users=2),
    StageSpec("open", 5, arrival_rate_rps=30.0),
]


def recorder(processes: int = 1) -> IntervalRecorder:
    return IntervalRecorder(process=7, stages=STAGES, processes=processes)


def test_an_interval_has_one_record_per_stage_with_its_outcomes_and_the_process_figures() -> None:
    rec = recorder(processes=3)
    rec.success("closed", None, 0.010)
    rec.failure("closed", None, "http_503", lambda: "busy")
    rec.scheduled("open", 0.002)
    rec.scheduled("open", 0.004)
    rec.dropped("open")
    (closed, opened) = rec.take(100.0, 101.0, "open", users=2, loadgen_cpu_cores=0.25)
    assert (closed.stage, closed.process, closed.t_start_s, closed.t_end_s) == ("closed", 7, 100.0, 101.0)
    assert (closed.users, closed.loadgen_cpu_cores, closed.offered_rps) == (2, 0.25, None)
    assert (closed.requests, closed.failures, closed.errors, closed.error_samples) == (
        2,
        1,
        {"http_503": 1},
        {"http_503": ["busy"]},
    )
    assert LatencyHistogram.decode(closed.latency_hdr).count == 1, "a failure is no latency sample"
    assert opened.offered_rps == pytest.approx(10.0), "the process's share of the stage's rate"
    assert (opened.scheduled, opened.dropped, opened.send_lag_max_s) == (2, 1, 0.004)
    assert (opened.requests, opened.failures, opened.errors) == (1, 1, {DROPPED: 1})


def test_an_idle_interval_of_the_stage_in_force_is_a_record_and_the_next_interval_starts_empty() -> None:
    rec = recorder()
    rec.success("closed", None, 0.010)
    assert [r.stage for r in rec.take(0.0, 1.0, "closed", 0, 0.0)] == ["closed"]
    (idle,) = rec.take(1.0, 2.0, "closed", 0, 0.0)
    assert (idle.stage, idle.requests, idle.failures, idle.scheduled) == ("closed", 0, 0, 0)
    assert rec.take(2.0, 3.0, None, 0, 0.0) == [], "after the last stage no record without outcomes"


def test_a_named_request_counts_in_its_stage_and_in_its_own_tally() -> None:
    rec = recorder()
    rec.success("closed", "classify", 0.010)
    rec.success("closed", None, 0.020)
    rec.answered("closed", "classify", 200, None, CheckResult(status_ok=True, checked=True, mismatch="label"), 0.03)
    rec.answered("closed", "health", 0, TimeoutError("timed out"), CheckResult(status_ok=False), 0.0)
    rec.bad_input_answered("closed", None, 400)
    (record,) = rec.take(0.0, 1.0, None, 0, 0.0)
    assert (record.requests, record.failures, record.checked, record.mismatches) == (4, 1, 1, 1)
    assert record.errors == {"timeout": 1}
    assert record.bad_inputs == 1 and record.bad_input_5xx == 0 and record.bad_input_accepted == 0
    assert set(record.by_request) == {"classify", "health"}
    classify = record.by_request["classify"]
    assert (classify.requests, classify.failures, classify.checked, classify.mismatches) == (2, 0, 1, 1)
    assert record.by_request["health"].errors == {"timeout": 1}


def test_a_user_classes_request_is_failed_by_its_exception_and_counted_under_its_status() -> None:
    rec = recorder()
    read: list[int] = []

    def content() -> bytes:
        read.append(1)
        return b"overloaded"

    rec.user_request("closed", 12.0, 200, None, content)
    rec.user_request("closed", 30.0, 200, ValueError("wrong label"), content)
    rec.user_request("closed", 5.0, 503, ValueError("status 503"), content)
    rec.user_request("closed", 0.0, 0, ConnectionRefusedError("refused"), content)
    (record,) = rec.take(0.0, 1.0, None, 0, 0.0)
    assert (record.requests, record.failures) == (4, 3)
    assert record.errors == {"error_ValueError": 1, "http_503": 1, "connection_error": 1}
    assert record.error_samples["http_503"] == ["overloaded"]
    assert "wrong label" in record.error_samples["error_ValueError"][0]
    assert read == [1], "the answer is read for a failed status only"
    assert LatencyHistogram.decode(record.latency_hdr).count == 1


@pytest.mark.parametrize(
    ("status", "fives", "accepted"), [(0, 1, 0), (200, 0, 1), (204, 0, 1), (422, 0, 0), (502, 1, 0)]
)
def test_a_bad_input_is_judged_by_its_answer(status: int, fives: int, accepted: int) -> None:
    rec = recorder()
    rec.bad_input_answered("closed", None, status)
    (record,) = rec.take(0.0, 1.0, None, 0, 0.0)
    assert (record.bad_inputs, record.bad_input_5xx, record.bad_input_accepted) == (1, fives, accepted)


def test_streamed_figures_reach_the_stage_and_the_request() -> None:
    rec = IntervalRecorder(0, STAGES, 1, limits=(RequestLimits(ttft_ms=100.0),))
    figures = StreamFigures(
        ttft_s=0.05,
        itl_s=(0.01, 0.02),
        tpot_s=0.015,
        e2e_s=0.2,
        output_tokens=3,
        input_tokens=5,
        tokens_from_usage=True,
        done=True,
    )
    rec.streamed("closed", "chat", figures)
    (record,) = rec.take(0.0, 1.0, None, 0, 0.0)
    assert record.streamed == 1 and record.output_tokens == 3 and record.input_tokens == 5
    assert record.by_request["chat"].streamed == 1
    assert sum(record.good_requests.values()) == 1


OUTCOME = st.tuples(
    st.sampled_from(["closed", "open", "other"]),
    st.sampled_from([None, "a", "b"]),
    st.one_of(st.floats(min_value=0.0, max_value=60.0), st.sampled_from(["http_500", "timeout", DROPPED])),
)


@given(st.lists(OUTCOME, max_size=60))
def test_the_records_of_an_interval_add_up_to_what_was_recorded(outcomes: list[tuple[str, str | None, object]]) -> None:
    rec = recorder()
    for stage, request, outcome in outcomes:
        if isinstance(outcome, float):
            rec.success(stage, request, outcome)
        elif outcome == DROPPED:
            rec.dropped(stage)
        else:
            rec.failure(stage, request, str(outcome))
    records = rec.take(0.0, 1.0, None, 0, 0.0)
    assert len({r.stage for r in records}) == len(records)
    assert sum(r.requests for r in records) == len(outcomes)
    assert sum(r.failures for r in records) == sum(not isinstance(o, float) for _, _, o in outcomes)
    assert sum(LatencyHistogram.decode(r.latency_hdr).count for r in records) == sum(
        isinstance(o, float) for _, _, o in outcomes
    )
    assert sum(r.dropped for r in records) == sum(o == DROPPED for _, _, o in outcomes)
    for record in records:
        assert sum(record.errors.values()) == record.failures
        named = [(req, o) for s, req, o in outcomes if s == record.stage and req is not None and o != DROPPED]
        assert sum(tally.requests for tally in record.by_request.values()) == len(named)
        for name, tally in record.by_request.items():
            assert tally.requests == sum(req == name for req, _ in named)
    assert rec.take(1.0, 2.0, None, 0, 0.0) == [], "what was taken is not taken again"


class ReadTimeoutError(Exception):
    """Named as urllib3's is, with a message that says nothing."""


class ConnectionClosedError(Exception):
    pass


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (503, None, "http_503"),
        (200, ValueError("any"), "http_200"),
        (0, None, "unknown"),
        (0, TimeoutError("x"), "timeout"),
        (0, OSError("read timed out"), "timeout"),
        (0, ReadTimeoutError(), "timeout"),
        (0, ConnectionClosedError(), "connection_error"),
        (0, ConnectionRefusedError("x"), "connection_error"),
        (0, OSError("connection reset by peer"), "connection_error"),
        (0, OSError("[Errno 111] Refused"), "connection_error"),
        (0, ValueError("bad"), "error_ValueError"),
    ],
)
def test_error_kinds(status: int, error: BaseException | None, kind: str) -> None:
    assert error_kind(status, error) == kind


def test_a_closed_model_latency_is_the_exchange() -> None:
    assert request_latency_s({"start_time": 1000.0, "response_time": 25.0}, None) == pytest.approx(0.025)


def test_an_open_model_latency_counts_the_late_start() -> None:
    meta = {"start_time": 1000.5, "response_time": 25.0}
    assert request_latency_s(meta, 1000.0) == pytest.approx(0.525)


@given(
    st.floats(min_value=1e9, max_value=2e9),
    st.floats(min_value=0.0, max_value=60_000.0),
    st.floats(min_value=-5.0, max_value=5.0),
)
def test_latency_is_never_negative_and_is_the_exchange_when_sent_on_time_or_early(
    start_s: float, response_ms: float, late_s: float
) -> None:
    meta = {"start_time": start_s, "response_time": response_ms}
    exchange_s = response_ms / 1000.0
    latency_s = request_latency_s(meta, start_s - late_s)
    assert latency_s >= 0.0
    assert latency_s >= exchange_s
    if late_s <= 0:
        assert latency_s == exchange_s
    assert request_latency_s(meta, start_s) == exchange_s


def test_the_overhead_is_cut_from_the_calibration_latencies() -> None:
    assert loadgen_overhead(3, [], 100.0) is None
    assert loadgen_overhead(3, [0.001], 100.0) is None
    overhead = loadgen_overhead(3, [i / 1000.0 for i in range(1, 102)], 100.0)
    assert overhead is not None
    assert (overhead.process, overhead.requests, overhead.rate_rps) == (3, 101, 100.0)
    assert (overhead.p50_ms, overhead.p95_ms, overhead.p99_ms) == pytest.approx((51.0, 96.0, 100.0))


@given(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=2, max_size=300))
def test_the_overhead_percentiles_are_ordered_and_within_the_samples(latencies_s: list[float]) -> None:
    overhead = loadgen_overhead(0, latencies_s, 100.0)
    assert overhead is not None and overhead.requests == len(latencies_s)
    low_ms, high_ms = 1000.0 * min(latencies_s), 1000.0 * max(latencies_s)
    # Interpolating between two equal samples may round in the last bit.
    slack_ms = 1e-12 * high_ms
    cuts_ms = [low_ms, overhead.p50_ms, overhead.p95_ms, overhead.p99_ms, high_ms]
    assert all(a <= b + slack_ms for a, b in itertools.pairwise(cuts_ms))
