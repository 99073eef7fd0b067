"""junit.xml: one test case per objective result, statuses mapped to failure / error / pass, always parseable."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import ObjectiveResult, Status, Verdict
from harness.report.junit import render_junit
from harness.rundir import RunDirectory


def _result(
    status: Status, reason: str = "why", stage: str | None = "steady", metric: str = "latency_p95_ms"
) -> ObjectiveResult:
    return ObjectiveResult(
        objective=f"{metric} <= 150",
        metric=metric,
        stage=stage,
        status=status,
        threshold=150.0,
        bound="max",
        measured=120.0,
        ci_low=110.0,
        ci_high=130.0,
        reason=reason,
    )


def _verdict(results: list[ObjectiveResult], warnings: list[str] | None = None) -> Verdict:
    return Verdict(status=Status.FAIL, exit_code=1, objectives=results, stages=[], warnings=warnings or [])


def test_recorded_run_has_one_testcase_per_objective_result(recorded_run: RunDirectory) -> None:
    verdict = recorded_run.read_verdict()

    root = ET.fromstring(render_junit(verdict, "harness.digits-recorded"))

    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(verdict.objectives) == 15
    assert suite.get("tests") == "15" and suite.get("failures") == "3" and suite.get("errors") == "1"
    assert [c.get("name") for c in cases] == [f"{r.objective} [{r.stage}]" for r in verdict.objectives]
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [
        "latency_p95_ms <= 150 [peak]",
        "latency_p99_ms <= 300 [peak]",
        "error_rate <= 0.01 [peak]",
    ]
    (inconclusive,) = [c for c in cases if c.find("error") is not None]
    assert inconclusive.get("name") == "latency_p99_ms <= 300 [low]"
    error = inconclusive.find("error")
    assert error is not None and error.get("type") == "INCONCLUSIVE"
    assert "too few samples for p99" in (error.get("message") or "")
    # Each case's time is its stage's duration.
    assert cases[0].get("time") == "20.000"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties == {"status": "FAIL", "exit_code": "1"}
    suite_out = suite.find("system-out")
    assert suite_out is not None and "scrape failed" in (suite_out.text or "")


def test_each_status_maps_to_its_junit_outcome() -> None:
    results = [
        _result(Status.PASS, "fine"),
        _result(Status.WARN, "straddles", stage="b"),
        _result(Status.FAIL, "missed", stage="c"),
        _result(Status.INCONCLUSIVE, "too few samples", stage="d"),
    ]
    suite = ET.fromstring(render_junit(_verdict(results), "s")).find("testsuite")
    assert suite is not None
    passed, warned, failed, inconclusive = suite.findall("testcase")

    assert passed.find("failure") is None and passed.find("error") is None and passed.find("skipped") is None
    warn_out = warned.find("system-out")
    assert warned.find("failure") is None and warned.find("error") is None
    assert warn_out is not None and (warn_out.text or "").startswith("WARN: ")
    failure = failed.find("failure")
    assert failure is not None and failure.get("message") == "missed" and failure.get("type") == "FAIL"
    assert "measured 120 ms, threshold ≤ 150 ms, CI [110 ms, 130 ms]" in (failure.text or "")
    error = inconclusive.find("error")
    assert error is not None and error.get("message") == "too few samples"
    assert suite.get("failures") == "1" and suite.get("errors") == "1" and suite.get("skipped") == "0"


def test_run_level_results_name_the_run() -> None:
    result = _result(Status.INCONCLUSIVE, "no autoscaling records", stage=None, metric="scale_up_within_s")
    case = ET.fromstring(render_junit(_verdict([result]), "s")).find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == "scale_up_within_s <= 150 [(run)]"
    assert case.get("classname") == "s.scale_up_within_s"
    assert case.get("time") == "0"


def test_no_objectives_is_an_empty_but_valid_suite() -> None:
    verdict = Verdict(status=Status.INCONCLUSIVE, exit_code=3, objectives=[], stages=[], warnings=["no objectives"])
    suite = ET.fromstring(render_junit(verdict, "s")).find("testsuite")
    assert suite is not None and suite.get("tests") == "0" and suite.findall("testcase") == []


@settings(max_examples=80, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(list(Status)), max_size=8),
    reason=st.text(),
    suite_name=st.text(min_size=1),
    warning=st.text(),
)
def test_any_text_gives_parseable_xml_with_the_right_counts(
    statuses: list[Status], reason: str, suite_name: str, warning: str
) -> None:
    results = [_result(status, reason, stage=f"s{i}") for i, status in enumerate(statuses)]

    root = ET.fromstring(render_junit(_verdict(results, [warning]), suite_name))

    suite = root.find("testsuite")
    assert suite is not None
    assert len(suite.findall("testcase")) == len(statuses)
    assert suite.get("failures") == str(statuses.count(Status.FAIL))
    assert suite.get("errors") == str(statuses.count(Status.INCONCLUSIVE))
    assert len(suite.findall("testcase/failure")) == statuses.count(Status.FAIL)
    assert len(suite.findall("testcase/error")) == statuses.count(Status.INCONCLUSIVE)
