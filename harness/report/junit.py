"""junit.xml: one JUnit test case per objective result, so CI systems show each objective as a test.

Mapping of the harness statuses:

    PASS          a passing test case (measured value and CI in <system-out>)
    WARN          a passing test case with a "WARN:" note in <system-out>; WARN exits 0, and the data
                  cannot show a miss, so CI must not go red on it
    FAIL          <failure type="FAIL" message=reason>
    INCONCLUSIVE  <error type="INCONCLUSIVE" message=reason>. Not <skipped>: a skipped test reads as
                  harmless (many CI dashboards show it green or grey), while an inconclusive objective
                  is one the run could not prove, and the run exits 3. <error> is JUnit's "the test could
                  not be carried out properly", which is what happened, and it is counted apart from
                  failures, so a dashboard still tells "missed" from "not proven".

The suite carries the run's status and exit code as <properties>, and its warnings in <system-out>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from harness.model import ObjectiveResult, StageResult, Status, Verdict
from harness.report._common import fmt_ci, fmt_metric_value, fmt_stage, fmt_threshold

# Characters XML 1.0 cannot carry at all (reasons may quote a crashed replica's log tail).
_NOT_XML = re.compile(r"[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _case_name(result: ObjectiveResult) -> str:
    return _xml_text(f"{result.objective} [{fmt_stage(result)}]")


def _details(result: ObjectiveResult) -> str:
    return _xml_text(
        f"{result.status.value}: {result.objective} on {fmt_stage(result)}\n"
        f"measured {fmt_metric_value(result.metric, result.measured)}, threshold {fmt_threshold(result)}, "
        f"CI {fmt_ci(result)}\n{result.reason}"
    )


def _testcase(suite: ET.Element, suite_name: str, result: ObjectiveResult, stages: dict[str, StageResult]) -> None:
    stage = stages.get(result.stage) if result.stage is not None else None
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "name": _case_name(result),
            "classname": _xml_text(f"{suite_name}.{result.metric}"),
            "time": f"{stage.duration_s:.3f}" if stage is not None else "0",
        },
    )
    if result.status is Status.FAIL:
        ET.SubElement(case, "failure", {"type": "FAIL", "message": _xml_text(result.reason)}).text = _details(result)
    elif result.status is Status.INCONCLUSIVE:
        message = _xml_text(result.reason)
        ET.SubElement(case, "error", {"type": "INCONCLUSIVE", "message": message}).text = _details(result)
    else:
        ET.SubElement(case, "system-out").text = _details(result)


def render_junit(verdict: Verdict, suite_name: str) -> str:
    """The verdict as a JUnit XML document (one <testsuite> inside <testsuites>)."""
    results = verdict.objectives
    failures = sum(1 for r in results if r.status is Status.FAIL)
    errors = sum(1 for r in results if r.status is Status.INCONCLUSIVE)
    stages = {s.name: s for s in verdict.stages}
    total_s = sum(s.duration_s for s in verdict.stages)
    counts = {
        "tests": str(len(results)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{total_s:.3f}",
    }
    name = _xml_text(suite_name)
    root = ET.Element("testsuites", {"name": name, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": name, **counts})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("status", verdict.status.value), ("exit_code", str(verdict.exit_code))):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for result in results:
        _testcase(suite, suite_name, result, stages)
    if verdict.warnings:
        ET.SubElement(suite, "system-out").text = _xml_text("\n".join(f"warning: {w}" for w in verdict.warnings))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
