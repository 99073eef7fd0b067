from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.targets.readiness import READINESS_PROBE, ProbeRule, Readiness, next_probe_in_s, observe


def run(probes: list[bool], rule: ProbeRule = READINESS_PROBE) -> list[Readiness]:
    states = [Readiness()]
    for second, ok in enumerate(probes):
        states.append(observe(states[-1], ok, float(second), rule))
    return states[1:]


def test_one_success_makes_a_replica_ready_and_records_when() -> None:
    assert [s.ready for s in run([False, False, True])] == [False, False, True]
    assert run([False, False, True])[-1].ready_at_s == 2.0


def test_it_turns_unready_only_after_failure_threshold_consecutive_failures() -> None:
    states = run([True, False, False, False])
    assert [s.ready for s in states] == [True, True, True, False]
    assert states[-1].failures == 3


def test_a_success_between_failures_resets_the_count() -> None:
    states = run([True, False, False, True, False, False])
    assert all(s.ready for s in states)
    assert states[-1].failures == 2


def test_ready_again_keeps_the_first_ready_time() -> None:
    states = run([False, True, False, False, False, True])
    assert [s.ready for s in states] == [False, True, True, True, False, True]
    assert states[-1].ready_at_s == 1.0


def test_a_threshold_of_one_is_the_strict_rule() -> None:
    assert [s.ready for s in run([True, False], ProbeRule(failure_threshold=1))] == [True, False]


def test_fast_polling_until_first_ready_then_the_period() -> None:
    assert next_probe_in_s(Readiness(), startup_poll_s=0.1) == 0.1
    assert next_probe_in_s(observe(Readiness(), True, 0.0), startup_poll_s=0.1) == READINESS_PROBE.period_s
    after_ready_then_unready = run([True, False, False, False])[-1]
    assert next_probe_in_s(after_ready_then_unready, startup_poll_s=0.1) == READINESS_PROBE.period_s


@given(probes=st.lists(st.booleans(), max_size=40), threshold=st.integers(min_value=1, max_value=5))
def test_ready_means_a_success_and_fewer_than_threshold_failures_since(probes: list[bool], threshold: int) -> None:
    states = run(probes, ProbeRule(failure_threshold=threshold))
    for index, state in enumerate(states):
        seen = probes[: index + 1]
        trailing_failures = len(seen) - (max(i for i, ok in enumerate(seen) if ok) + 1) if any(seen) else len(seen)
        assert state.failures == trailing_failures
        assert state.ready == (any(seen) and trailing_failures < threshold)
        first_success = next((float(i) for i, ok in enumerate(seen) if ok), None)
        assert state.ready_at_s == first_success
