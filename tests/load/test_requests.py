"""Requests as users define them: templates, weighted choice, headers from the environment, answer checks."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import RequestConfig, ResponseCheck, SameAsAlone
from harness.errors import ConfigError
from harness.load.bodies import fill_template
from harness.load.reference_answers import body_key
from harness.load.requests import (
    PreparedBody,
    ReadyRequest,
    check_answer,
    choose_send,
    cumulative_weights,
    endpoint_request,
    expand_headers,
    pick_weighted,
    prepare_bodies,
    ready_requests,
    with_alone_answers,
)


def request(**fields: Any) -> RequestConfig:
    return RequestConfig.model_validate({"name": "predict", "path": "/predict", **fields})


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# --------------------------------------------------------------------------- templates and bodies


def test_a_whole_placeholder_keeps_the_columns_type_and_a_partial_one_becomes_text() -> None:
    template = {"rows": ["{{features}}"], "note": "wine {{id}}", "fixed": [1, None]}
    row = {"features": [1.5, 2], "id": 7}
    assert fill_template(template, row) == {"rows": [[1.5, 2]], "note": "wine 7", "fixed": [1, None]}


def test_template_bodies_carry_their_row_for_the_expected_answer(tmp_path: Path) -> None:
    dataset = write_jsonl(tmp_path / "rows.jsonl", [{"x": [1, 2], "label": 0}, {"x": [3, 4], "label": 2}])
    bodies, content_type = prepare_bodies(
        request(
            body_template={"rows": ["{{x}}"]},
            dataset=str(dataset),
            check={"fields": [{"field": "labels.0", "expected_column": "label"}]},
        ),
        "requests[0]",
    )
    assert [json.loads(b.body or b"") for b in bodies] == [{"rows": [[1, 2]]}, {"rows": [[3, 4]]}]
    assert [b.row["label"] for b in bodies if b.row] == [0, 2]
    assert content_type is None  # JSON: ready_requests sends application/json unless a header says otherwise


def test_a_missing_column_names_the_template_the_line_and_the_columns(tmp_path: Path) -> None:
    dataset = write_jsonl(tmp_path / "rows.jsonl", [{"x": 1}, {"y": 2}])
    with pytest.raises(ConfigError, match=r"requests\[0\]\.body_template: column 'x' .* line 2 \(it has: y\)"):
        prepare_bodies(request(body_template={"v": "{{x}}"}, dataset=str(dataset)), "requests[0]")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"empty"),
        ('{"a": 1}\n{"a": \n', r"line 2: not valid JSON"),
    ],
)
def test_bad_body_files_name_the_field_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bodies.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"requests\[1\]\.body_file .*" + message):
        prepare_bodies(request(body_file=str(path)), "requests[1]")


def test_a_missing_body_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"requests\[0\]\.body_file '.*absent.jsonl': cannot read"):
        prepare_bodies(request(body_file=str(tmp_path / "absent.jsonl")), "requests[0]")


# --------------------------------------------------------------------------- headers


def test_headers_read_the_environment_and_a_missing_variable_is_named_not_shown() -> None:
    headers = {"Authorization": "Bearer ${API_TOKEN}", "X-Team": "ml"}
    assert expand_headers(headers, {"API_TOKEN": "s3cret"}, "requests[0]") == {
        "Authorization": "Bearer s3cret",
        "X-Team": "ml",
    }
    with pytest.raises(ConfigError, match=r"requests\[0\]\.headers\.Authorization: environment variable API_TOKEN"):
        expand_headers(headers, {}, "requests[0]")


def test_json_bodies_get_a_json_content_type_unless_the_user_set_one(tmp_path: Path) -> None:
    bodies = write_jsonl(tmp_path / "b.jsonl", [{"a": 1}])
    (plain, custom, bodiless) = ready_requests(
        [
            request(body_file=str(bodies)),
            request(name="custom", body_file=str(bodies), headers={"content-type": "application/x-ndjson"}),
            request(name="health", method="GET", path="/livez"),
        ],
        {},
    )
    assert plain.headers == {"Content-Type": "application/json"}
    assert custom.headers == {"content-type": "application/x-ndjson"}
    assert bodiless.headers == {} and bodiless.bodies[0].body is None
    legacy = endpoint_request("/classify", [b"{}"])
    assert (legacy.method, legacy.path, legacy.check.status, legacy.check.fields) == ("POST", "/classify", None, [])


# --------------------------------------------------------------------------- weighted choice


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=0.01, max_value=100), min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
)
def test_weighted_choice_follows_the_weights(weights: list[float], seed: int) -> None:
    cumulative = cumulative_weights(weights)
    rng = random.Random(seed)
    draws = 4000
    counts = Counter(pick_weighted(cumulative, rng) for _ in range(draws))
    assert set(counts) <= set(range(len(weights)))
    total = sum(weights)
    for index, weight in enumerate(weights):
        expected = draws * weight / total
        # Five binomial standard deviations, plus slack for tiny expectations.
        assert abs(counts[index] - expected) <= 5 * (expected * (1 - weight / total)) ** 0.5 + 3


@pytest.mark.parametrize("weights", [[], [1.0, 0.0], [float("nan")], [-1.0]])
def test_weights_must_be_positive(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        cumulative_weights(weights)


# --------------------------------------------------------------------------- checks


def test_status_checks_default_to_any_2xx() -> None:
    default = ResponseCheck()
    assert check_answer(default, 204, b"", None).status_ok
    assert not check_answer(default, 500, b"", None).status_ok
    bad_input = ResponseCheck(status=[400, 422])
    assert bad_input.expects_bad_input and not default.expects_bad_input
    assert check_answer(bad_input, 422, b"", None).status_ok
    assert not check_answer(bad_input, 200, b"{}", None).status_ok


def test_field_checks_find_mismatches() -> None:
    check = ResponseCheck.model_validate(
        {
            "fields": [
                {"field": "labels.0", "expected_column": "label"},
                {"field": "model", "among": ["gbc", "gbc-v2"]},
                {"field": "ok", "equals": True},
            ]
        }
    )
    right = json.dumps({"labels": [2], "model": "gbc", "ok": True}).encode()
    assert check_answer(check, 200, right, {"label": 2}) == check_answer(check, 200, right, {"label": 2.0})
    result = check_answer(check, 200, right, {"label": 2})
    assert result.checked and result.mismatch is None
    assert check_answer(check, 200, right, {"label": 1}).mismatch == "labels.0 != label"
    other_model = json.dumps({"labels": [2], "model": "mlp", "ok": True}).encode()
    assert check_answer(check, 200, other_model, {"label": 2}).mismatch == "model not among"
    truthy = json.dumps({"labels": [2], "model": "gbc", "ok": 1}).encode()
    assert check_answer(check, 200, truthy, {"label": 2}).mismatch == "ok != expected"  # 1 is not true
    assert check_answer(check, 200, b"<html>", {"label": 2}).mismatch == "answer not JSON"
    assert check_answer(check, 200, b'{"labels": []}', {"label": 2}).mismatch == "labels.0 missing"
    assert not check_answer(check, 503, right, {"label": 2}).checked  # a wrong status is a failure, not checked


def test_a_check_needs_exactly_one_expectation() -> None:
    with pytest.raises(ValueError, match="exactly one of equals, among or expected_column"):
        ResponseCheck.model_validate({"fields": [{"field": "a", "equals": 1, "among": [1]}]})
    with pytest.raises(ValueError, match="exactly one"):
        ResponseCheck.model_validate({"fields": [{"field": "a", "equals": None}]})


def test_an_answer_is_also_compared_with_the_same_bodys_answer_alone() -> None:
    check = ResponseCheck.model_validate({"same_as_alone": {"field": "labels.0"}})
    agreeing = check_answer(check, 200, b'{"labels": [2]}', None, alone_answer=2)
    assert agreeing.checked and agreeing.mismatch is None
    assert check_answer(check, 200, b'{"labels": [1]}', None, alone_answer=2).mismatch == (
        "labels.0 differs from the answer alone"
    )
    assert not check_answer(check, 200, b'{"labels": [1]}', None).checked  # no answer alone: nothing to compare
    assert not check_answer(check, 500, b"{}", None, alone_answer=2).checked  # a wrong status is a failure
    both = ResponseCheck.model_validate(
        {"fields": [{"field": "labels.0", "among": [0, 1, 2]}], "same_as_alone": {"field": "labels.0"}}
    )
    assert check_answer(both, 200, b'{"labels": [7]}', None, alone_answer=7).mismatch == "labels.0 not among"
    assert check_answer(both, 200, b'{"labels": [1]}', None, alone_answer=2).mismatch is not None


def test_a_request_compared_with_answers_alone_sends_only_the_bodies_that_have_one() -> None:
    ready = endpoint_request("/predict", [b'{"x":1}', b'{"x":2}', b'{"x":1}'])
    assert with_alone_answers(ready, {}) == ready
    compared = with_alone_answers(ready, {body_key(b'{"x":1}'): [0]})
    assert [(body.body, body.alone_answer) for body in compared.bodies] == [(b'{"x":1}', [0]), (b'{"x":1}', [0])]


def test_same_as_alone_true_means_the_whole_answer_with_defaults() -> None:
    assert ResponseCheck.model_validate({"same_as_alone": True}).same_as_alone == SameAsAlone()
    assert ResponseCheck.model_validate({"same_as_alone": False}).same_as_alone is None
    assert ResponseCheck.model_validate({"same_as_alone": True}).reads_answer
    with pytest.raises(ValueError, match="bodies"):
        ResponseCheck.model_validate({"same_as_alone": {"bodies": 0}})


def _kind(name: str, bodies: int) -> ReadyRequest:
    return ReadyRequest(name, "POST", "/" + name, {}, [PreparedBody(f"{name}{i}".encode()) for i in range(bodies)])


def test_a_send_is_a_request_by_weight_or_the_bad_input_mix_at_its_fraction() -> None:
    requests = [_kind("a", 3), _kind("b", 1)]
    malformed = [_kind("bad", 2)]
    rng = random.Random(11)
    sends = [choose_send(requests, cumulative_weights([3.0, 1.0]), malformed, 0.2, rng) for _ in range(4000)]
    counts = Counter(request.name for request, _ in sends)
    assert 600 < counts["bad"] < 1000, "about a fifth"
    assert 2 < counts["a"] / counts["b"] < 4.5, "three to one"
    assert all(body in request.bodies for request, body in sends)
    assert {body.body for request, body in sends if request.name == "a"} == {b"a0", b"a1", b"a2"}


def test_without_a_bad_input_mix_a_single_request_is_always_sent() -> None:
    (only,) = requests = [_kind("a", 2)]
    for _ in range(50):
        request, _body = choose_send(requests, cumulative_weights([1.0]), [], 0.5, random.Random(3))
        assert request is only


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0.0, max_value=1.0))
def test_a_seed_repeats_the_sends(seed: int, fraction: float) -> None:
    requests = [_kind("a", 3), _kind("b", 2), _kind("c", 1)]
    cumulative = cumulative_weights([1.0, 2.0, 0.5])

    def sends() -> list[tuple[str, bytes | None]]:
        rng = random.Random(seed)
        return [
            (request.name, body.body)
            for request, body in (
                choose_send(requests, cumulative, [_kind("bad", 2)], fraction, rng) for _ in range(30)
            )
        ]

    assert sends() == sends()
