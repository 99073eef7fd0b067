"""JSON answers as checks read them: field paths and equality with a tolerance."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.load.json_fields import MISSING, field_at, same_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_a_json_value_matches_itself_after_a_round_trip(value: Any) -> None:
    assert same_json(value, json.loads(json.dumps(value)))
    assert field_at({"a": [value]}, "a.0") is value or same_json(field_at({"a": [value]}, "a.0"), value)


@settings(max_examples=200, deadline=None)
@given(a=json_values, b=json_values)
def test_json_equality_is_symmetric(a: Any, b: Any) -> None:
    assert same_json(a, b) == same_json(b, a)


def test_field_paths_read_objects_and_list_indexes() -> None:
    answer = {"labels": [0, 2], "meta": {"model": "gbc"}}
    assert field_at(answer, "labels.1") == 2 and field_at(answer, "labels.-1") == 2
    assert field_at(answer, "meta.model") == "gbc"
    assert field_at(answer, "labels.2") is MISSING and field_at(answer, "meta.version") is MISSING
    assert field_at({"a": None}, "a") is None  # null is a value, not a missing field


def test_a_tolerance_lets_numbers_differ_by_at_most_that_much() -> None:
    assert same_json({"p": [0.1, 0.9]}, {"p": [0.1000001, 0.8999999]}, tolerance=1e-6)
    assert not same_json({"p": [0.1, 0.9]}, {"p": [0.1001, 0.9]}, tolerance=1e-6)
    assert not same_json(True, 1, tolerance=1.0)  # a boolean is never a number


@settings(max_examples=200, deadline=None)
@given(a=json_values, b=json_values, tolerance=st.floats(0, 10))
def test_a_tolerance_only_ever_makes_more_answers_equal(a: Any, b: Any, tolerance: float) -> None:
    if same_json(a, b):
        assert same_json(a, b, tolerance)
    assert same_json(a, b, tolerance) == same_json(b, a, tolerance)
