"""Answers alone: which bodies are sampled, which answers become the reference, and the comparison under load."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import SameAsAlone
from harness.load.json_fields import MISSING
from harness.load.reference_answers import (
    AloneAnswers,
    alone_mismatch,
    answer_value,
    body_key,
    describe,
    reference_answers,
    sample_bodies,
)
from tests.load.test_json_fields import json_values

WHOLE = SameAsAlone()
LABEL = SameAsAlone(field="labels.0")


def test_the_first_distinct_bodies_are_sampled_in_order() -> None:
    bodies = [b"a", b"b", b"a", None, b"c", b"d"]
    assert sample_bodies(bodies, 3) == [b"a", b"b", None]
    assert sample_bodies(bodies, 100) == [b"a", b"b", None, b"c", b"d"]
    assert body_key(None) == body_key(b"")  # no body and an empty one are sent alike


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.binary(max_size=3), max_size=30), count=st.integers(1, 10))
def test_a_sample_is_distinct_bodies_of_the_request_and_as_many_as_asked_when_there_are(
    bodies: list[bytes], count: int
) -> None:
    sampled = sample_bodies(bodies, count)
    assert len(sampled) == min(count, len(set(bodies)))
    assert len(set(sampled)) == len(sampled) and set(sampled) <= set(bodies)


def test_the_compared_value_is_the_field_or_the_whole_answer() -> None:
    assert answer_value(LABEL, b'{"labels": [2, 0]}') == 2
    assert answer_value(WHOLE, b'{"labels": [2, 0]}') == {"labels": [2, 0]}
    assert answer_value(LABEL, b'{"labels": []}') is MISSING
    assert answer_value(LABEL, b"<html>") is MISSING
    assert answer_value(WHOLE, b"plain 2") == "plain 2"  # not JSON: compared as text


def test_bodies_answered_differently_twice_alone_or_without_the_field_are_left_out() -> None:
    alone = reference_answers(LABEL, [("a", 1, 1), ("b", 0, 2), ("c", MISSING, 1), ("d", 2.0, 2)])
    assert alone == AloneAnswers({"a": 1, "d": 2.0}, unstable=1, unanswered=1)
    line = describe("predict", alone)
    assert "'predict' sends 2 of 4 sampled bodies" in line and "1 answered differently" in line
    assert "1 got no comparable answer" in line


def test_a_tolerance_keeps_a_body_whose_float_answers_differ_in_the_last_digits() -> None:
    close = SameAsAlone(field="p", tolerance=1e-9)
    assert reference_answers(close, [("a", 0.3, 0.30000000000000004)]).answers == {"a": 0.3}
    assert alone_mismatch(close, 0.3, b'{"p": 0.30000000000000004}') is None
    assert alone_mismatch(close, 0.3, b'{"p": 0.31}') == "p differs from the answer alone"


def test_an_answer_under_load_is_a_mismatch_when_it_differs_or_lacks_the_field() -> None:
    assert alone_mismatch(LABEL, 2, b'{"labels": [2]}') is None
    assert alone_mismatch(LABEL, 2, b'{"labels": [0]}') == "labels.0 differs from the answer alone"
    assert alone_mismatch(LABEL, 2, b"{}") == "labels.0 missing"
    assert (
        alone_mismatch(WHOLE, {"labels": [2]}, b'{"labels": [2], "extra": 1}') == "answer differs from the answer alone"
    )


@settings(max_examples=200, deadline=None)
@given(answer=json_values, other=json_values)
def test_an_answer_agrees_with_itself_alone_and_not_with_a_different_one(answer: Any, other: Any) -> None:
    encoded = json.dumps(answer).encode()
    reference = answer_value(WHOLE, encoded)
    assert alone_mismatch(WHOLE, reference, encoded) is None
    different = json.dumps(other).encode()
    if json.loads(different) != json.loads(encoded):
        assert alone_mismatch(WHOLE, reference, different) is not None


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(st.text(max_size=4), json_values, json_values), max_size=10, unique_by=lambda p: p[0]))
def test_every_sampled_body_is_a_reference_unstable_or_unanswered(pairs: list[tuple[str, Any, Any]]) -> None:
    alone = reference_answers(WHOLE, pairs)
    assert len(alone.answers) + alone.unstable + alone.unanswered == len(pairs)
    for key, first, _ in pairs:
        if key in alone.answers:
            assert alone.answers[key] is first
