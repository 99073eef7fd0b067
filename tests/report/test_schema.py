"""docs/verdict.schema.json: it matches `to_json_dict(Verdict)` field for field, the recorded verdict validates,
and a broken verdict is refused with the JSON path of its first problem."""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from harness.errors import ReportError
from harness.model import (
    Bottleneck,
    CapacityPlan,
    FaultImpact,
    LoadgenOverhead,
    ObjectiveResult,
    PercentileEstimate,
    Saturation,
    StageResult,
    Status,
    StepAutoscaling,
    Verdict,
    to_json_dict,
)
from harness.report.schema import SCHEMA_PATH, validate_verdict, verdict_schema
from harness.rundir import RunDirectory

FIXTURE_VERDICT = Path(__file__).resolve().parents[1] / "fixtures" / "run_recorded" / "verdict.json"


def _fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE_VERDICT.read_text())
    return data


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _json_types(hint: Any) -> tuple[set[str], bool]:
    """JSON types a dataclass field of this type becomes, and whether it may be null."""
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(hint))
        (hint,) = options
    origin = typing.get_origin(hint) or hint
    mapping = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    if isinstance(origin, type) and issubclass(origin, Status):
        return {"Status"}, nullable
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        return {origin.__name__}, nullable
    return {mapping[origin]}, nullable


def _schema_types(prop: dict[str, Any]) -> tuple[set[str], bool]:
    if "$ref" in prop:
        return {prop["$ref"].rsplit("/", 1)[1]}, False
    if "anyOf" in prop:
        names = {p["$ref"].rsplit("/", 1)[1] for p in prop["anyOf"] if "$ref" in p}
        return names, any(p.get("type") == "null" for p in prop["anyOf"])
    declared = prop["type"]
    declared = set(declared) if isinstance(declared, list) else {declared}
    return declared - {"null"}, "null" in declared


@pytest.mark.parametrize(
    "cls",
    [
        Verdict,
        ObjectiveResult,
        StageResult,
        PercentileEstimate,
        Saturation,
        CapacityPlan,
        StepAutoscaling,
        Bottleneck,
        FaultImpact,
        LoadgenOverhead,
    ],
)
def test_schema_matches_the_dataclass_field_for_field(cls: type) -> None:
    schema = verdict_schema()
    node = schema if cls is Verdict else schema["$defs"][cls.__name__]
    fields = {f.name for f in dataclasses.fields(cls)}
    assert node["additionalProperties"] is False
    assert set(node["properties"]) == fields
    # to_json_dict writes every field, so every field is required, except those that older files lack (they
    # still render): added in schema version 2, and the load generator's overhead, the bad input answered 2xx and
    # the streamed requests' figures and the failed requests' samples, added within it.
    added_later = {"schema_version", "run_id", "scenario_name", "unit", "bottlenecks", "faults", "loadgen_overhead"}
    added_later |= {"bad_input_accepted", "error_samples"}
    # Streamed requests' figures (issue 22).
    added_later |= {"streamed", "ttft", "itl", "tpot", "input_tokens", "output_tokens", "output_tokens_squares"}
    added_later |= {"good_requests", "by_request", "request"}
    assert set(node["required"]) == fields - added_later
    hints = typing.get_type_hints(cls)
    for name in fields:
        assert _schema_types(node["properties"][name]) == _json_types(hints[name]), f"{cls.__name__}.{name}"


def test_status_enum_is_the_model_status() -> None:
    assert verdict_schema()["$defs"]["Status"]["enum"] == [s.value for s in Status]


def test_recorded_verdict_validates() -> None:
    validate_verdict(_fixture())


def test_verdict_written_by_the_run_directory_validates(tmp_path: Any) -> None:
    verdict = Verdict(status=Status.INCONCLUSIVE, exit_code=3, objectives=[], stages=[], warnings=["no objectives"])
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    run_dir.write_json("verdict.json", verdict)
    validate_verdict(run_dir.read_json("verdict.json"))


@pytest.mark.parametrize(
    ("path", "breaks"),
    [
        ("$.status", lambda d: d.update(status="OK")),
        ("$.objectives[3].status", lambda d: d["objectives"][3].update(status="pass")),
        ("$.objectives[0]", lambda d: d["objectives"][0].update(unexpected=1)),
        ("$.objectives[2]", lambda d: d["objectives"][2].pop("reason")),
        ("$.objectives[1].bound", lambda d: d["objectives"][1].update(bound="below")),
        ("$.stages[2].latency.p95.samples", lambda d: d["stages"][2]["latency"]["p95"].update(samples=-1)),
        ("$.stages[0].errors.http_503", lambda d: d["stages"][0]["errors"].update(http_503="3")),
        ("$.saturation.knee_rps", lambda d: d["saturation"].update(knee_rps="fast")),
        ("$.capacity.replicas_needed", lambda d: d["capacity"].update(replicas_needed=0)),
        ("$.autoscaling[1].stage", lambda d: d["autoscaling"][1].update(stage=None)),
        ("$.exit_code", lambda d: d.update(exit_code=2)),
        ("$", lambda d: d.pop("warnings")),
    ],
)
def test_broken_verdict_names_the_path_of_the_problem(path: str, breaks: Any) -> None:
    data = _fixture()
    breaks(data)
    with pytest.raises(ReportError) as raised:
        validate_verdict(data, source="run/verdict.json")
    message = str(raised.value)
    assert message.startswith("run/verdict.json: does not match docs/verdict.schema.json at ")
    assert f" at {path}: " in message


_optional_number = st.none() | st.floats(min_value=0, max_value=1e6)
_estimates = st.builds(
    PercentileEstimate,
    q=st.sampled_from([50.0, 95.0, 99.0, 99.9]),
    value_s=_optional_number,
    ci_low_s=_optional_number,
    ci_high_s=_optional_number,
    samples=st.integers(0, 10**7),
    confidence=st.floats(0.51, 0.999),
)
_names = st.text(min_size=1, max_size=12)
_stages = st.builds(
    StageResult,
    name=_names,
    judged=st.booleans(),
    start_s=st.floats(0, 2e9),
    end_s=st.floats(0, 2e9),
    duration_s=st.floats(0, 1e5),
    offered_users=st.none() | st.integers(0, 10_000),
    offered_rps=_optional_number,
    achieved_rps=st.floats(0, 1e6),
    requests=st.integers(0, 10**8),
    failures=st.integers(0, 10**8),
    error_rate=st.none() | st.floats(0, 1),
    errors=st.dictionaries(_names, st.integers(0, 10**6), max_size=3),
    latency=st.dictionaries(st.sampled_from(["p50", "p95", "p99", "p99.9"]), _estimates, max_size=4),
    dropped=st.integers(0, 10**6),
    replicas_min=st.none() | st.integers(0, 50),
    replicas_max=st.none() | st.integers(0, 50),
    loadgen_cpu_max_cores=_optional_number,
    invalid_reasons=st.lists(st.text(max_size=20), max_size=2),
    sample_shortfalls=st.dictionaries(st.sampled_from(["p99", "p99.9"]), st.text(max_size=20), max_size=2),
    latency_mean_s=_optional_number,
)
_objectives = st.builds(
    ObjectiveResult,
    objective=st.text(max_size=20),
    metric=st.sampled_from(["latency_p95_ms", "latency_p99.9_ms", "error_rate", "throughput_rps", "ready_within_s"]),
    stage=st.none() | _names,
    status=st.sampled_from(list(Status)),
    threshold=st.floats(0, 1e6),
    bound=st.sampled_from(["max", "min"]),
    measured=_optional_number,
    ci_low=_optional_number,
    ci_high=_optional_number,
    reason=st.text(max_size=40),
)


@settings(max_examples=60, deadline=None)
@given(
    status=st.sampled_from(list(Status)),
    objectives=st.lists(_objectives, max_size=4),
    stages=st.lists(_stages, max_size=3),
    warnings=st.lists(st.text(max_size=30), max_size=3),
)
def test_any_verdict_the_model_can_hold_validates(
    status: Status, objectives: list[ObjectiveResult], stages: list[StageResult], warnings: list[str]
) -> None:
    exit_code = {Status.PASS: 0, Status.WARN: 0, Status.FAIL: 1, Status.INCONCLUSIVE: 3}[status]
    verdict = Verdict(status=status, exit_code=exit_code, objectives=objectives, stages=stages, warnings=warnings)
    data = json.loads(json.dumps(to_json_dict(verdict)))
    validate_verdict(data)
    broken = copy.deepcopy(data)
    broken["status"] = status.value.lower()
    with pytest.raises(ReportError, match=r"at \$\.status: "):
        validate_verdict(broken)
