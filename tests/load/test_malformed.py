"""The bad-input generator: every kind spoils a valid body in its own way, deterministically per seed."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.load.malformed import (
    BAD_INPUT_CHECK,
    HUGE_BODY_BYTES,
    MALFORMED,
    malformed_body,
    malformed_pool,
    malformed_requests,
    wrong_shape,
)
from harness.load.requests import PreparedBody, ReadyRequest, endpoint_request

DIGITS = json.dumps({"images": [[float(i % 17) for i in range(64)], [1.0] * 64]}).encode()
WINE = json.dumps({"rows": [[14.2, 1.7, 2.4, 15.6, 127.0, 2.8, 3.1, 0.3, 2.3, 5.6, 1.0, 3.9, 1065.0]]}).encode()


def parsed(body: bytes) -> Any:
    return json.loads(body)


@pytest.mark.parametrize("valid", [DIGITS, WINE], ids=["digits", "wine"])
@pytest.mark.parametrize("seed", range(5))
def test_each_kind_breaks_the_body_as_named(valid: bytes, seed: int) -> None:
    original = parsed(valid)
    for kind in MALFORMED:
        spoiled = malformed_body(valid, random.Random(seed), (kind,))
        assert spoiled.kind == kind
        if kind == "wrong_content_type":
            assert spoiled.content_type == "text/plain" and parsed(spoiled.body) == original
            continue
        assert spoiled.content_type == "application/json" and spoiled.body != valid
        if kind == "not_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(spoiled.body)
        elif kind == "empty":
            assert spoiled.body in (b"", b"{}")
        elif kind == "huge":
            assert len(spoiled.body) > HUGE_BODY_BYTES and parsed(spoiled.body).keys() == original.keys()
        elif kind == "nan":
            numbers = [v for row in next(iter(parsed(spoiled.body).values())) for v in row]
            assert any(math.isnan(v) or math.isinf(v) for v in numbers)  # Python's lenient JSON reads NaN back
            with pytest.raises(ValueError):
                json.loads(spoiled.body, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        elif kind == "wrong_type":
            rows = next(iter(parsed(spoiled.body).values()))
            assert any(isinstance(v, str | dict) for row in rows for v in row)
        elif kind == "wrong_shape":
            rows = next(iter(parsed(spoiled.body).values()))
            lengths = [len(row) if isinstance(row, list) else -1 for row in rows]
            original_lengths = [len(row) for row in next(iter(original.values()))]
            assert lengths != original_lengths or len(rows) != len(original_lengths)


@settings(max_examples=50, deadline=None)
@given(
    document=st.dictionaries(
        st.text(min_size=1, max_size=4),
        st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=5), min_size=1, max_size=3)
        | st.integers()
        | st.text(max_size=5),
        min_size=1,
        max_size=3,
    ),
    seed=st.integers(0, 2**16),
)
def test_any_json_body_can_be_spoiled_by_every_kind_but_huge_and_never_stays_valid(
    document: dict[str, Any], seed: int
) -> None:
    valid = json.dumps(document).encode()
    for kind in MALFORMED:
        if kind == "huge":
            continue
        first = malformed_body(valid, random.Random(seed), (kind,))
        assert first == malformed_body(valid, random.Random(seed), (kind,)), "the same seed spoils the same way"
        if kind != "wrong_content_type":
            assert first.body != json.dumps(document, separators=(",", ":")).encode()


def test_the_pool_draws_each_kind_equally_and_the_mix_expects_4xx() -> None:
    pool = malformed_pool([DIGITS], random.Random(1), per_kind=16)
    counts = {kind: sum(1 for body in pool if body.kind == kind) for kind in MALFORMED}
    assert set(counts.values()) == {16}
    mix = malformed_requests([endpoint_request("/classify", [DIGITS, WINE])], random.Random(1))
    assert sorted(request.name for request in mix) == sorted(f"/classify [malformed {kind}]" for kind in MALFORMED)
    assert all(request.check == BAD_INPUT_CHECK and not request.counts_as_traffic for request in mix)
    assert BAD_INPUT_CHECK.expects_bad_input
    by_name = {request.name: request for request in mix}
    assert by_name["/classify [malformed wrong_content_type]"].headers == {"Content-Type": "text/plain"}


def test_a_scenarios_request_is_spoiled_with_its_own_method_path_and_headers_and_bodyless_ones_are_not() -> None:
    headers = {"X-Api-Key": "k", "content-type": "application/json; charset=utf-8"}
    update = ReadyRequest("update", "PUT", "/v2/rows", headers, [PreparedBody(WINE)])
    health = ReadyRequest("health", "GET", "/livez", {}, [PreparedBody(None)])
    mix = malformed_requests([update, health], random.Random(2))
    assert sorted(request.name for request in mix) == sorted(f"update [malformed {kind}]" for kind in MALFORMED)
    assert {(request.method, request.path) for request in mix} == {("PUT", "/v2/rows")}
    for request in mix:
        content_type = "text/plain" if request.name.endswith("wrong_content_type]") else "application/json"
        assert request.headers == {"X-Api-Key": "k", "Content-Type": content_type}, request.name


@settings(max_examples=100, deadline=None)
@given(
    images=st.lists(st.lists(st.integers(0, 16), min_size=2, max_size=4), min_size=2, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_a_wrong_shape_never_drops_a_whole_row_which_could_leave_a_valid_smaller_batch(
    images: list[list[int]], seed: int
) -> None:
    spoiled = json.loads(wrong_shape({"images": images}, random.Random(seed)))["images"]
    if len(spoiled) < len(images):
        raise AssertionError(f"a row was dropped: {images} -> {spoiled}")
    assert spoiled != images
