"""The bad-input generator: every kind spoils a valid body in its own way, deterministically per seed."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.load.bodies import Part, encode_form, encode_multipart, request_boundary, split_form, split_multipart
from harness.load.malformed import (
    BAD_INPUT_CHECK,
    FILE_MALFORMED,
    HUGE_BODY_BYTES,
    HUGE_TIMES_LARGEST,
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


# --------------------------------------------------------------------------- files and forms

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
BOUNDARY = request_boundary("upload")
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FORM = "application/x-www-form-urlencoded"


def upload(*bodies: bytes, content_type: str = MULTIPART) -> ReadyRequest:
    return ReadyRequest("upload", "POST", "/upload", {"Content-Type": content_type}, [PreparedBody(b) for b in bodies])


def multipart(image: bytes = PNG, note: bytes = b"seven") -> bytes:
    return encode_multipart([Part("image", image, "7.png", "image/png"), Part("note", note)], BOUNDARY)


def kinds(mix: list[ReadyRequest]) -> set[str]:
    return {request.name.removeprefix("upload [malformed ").removesuffix("]") for request in mix}


@pytest.mark.parametrize("seed", range(5))
def test_a_multipart_upload_is_spoiled_as_clients_break_uploads(seed: int) -> None:
    mix = malformed_requests([upload(multipart(), multipart(PNG[:-1]))], random.Random(seed))
    assert kinds(mix) == {
        "truncated",
        "wrong_file_type",
        "text_for_file",
        "empty_part",
        "missing_part",
        "huge",
        "no_boundary",
    }
    for request in mix:
        kind = request.name.removeprefix("upload [malformed ").removesuffix("]")
        assert request.check == BAD_INPUT_CHECK and not request.counts_as_traffic
        content_type = request.headers["Content-Type"]
        for body in request.bodies:
            assert body.body is not None
            if kind == "no_boundary":
                assert content_type == "multipart/form-data" and body.body in (multipart(), multipart(PNG[:-1]))
                continue
            assert content_type == MULTIPART
            parts = {part.name: part for part in split_multipart(body.body, BOUNDARY)}
            image = parts.get("image")
            if kind == "truncated":
                assert image is not None and 0 < len(image.content) < len(PNG) - 1 and PNG.startswith(image.content)
            elif kind == "wrong_file_type":
                assert image is not None and image.content.startswith(b"RIFF") and image.content_type == "image/png"
                assert image.filename == "7.png"
            elif kind == "text_for_file":
                assert image == Part("image", b"7.png") and len(parts) == 2
            elif kind == "empty_part":
                assert b"" in {part.content for part in parts.values()} and len(parts) == 2
            elif kind == "missing_part":
                assert len(parts) == 1
            elif kind == "huge":
                assert image is not None and len(body.body) > HUGE_BODY_BYTES and image.content.startswith(PNG[:-1])


def test_a_binary_body_is_cut_replaced_emptied_blown_up_or_mislabelled() -> None:
    mix = malformed_requests([upload(PNG, content_type="image/png")], random.Random(3))
    assert kinds(mix) == {"truncated", "wrong_file_type", "empty_part", "huge", "wrong_content_type"}
    by_kind = {request.name.removeprefix("upload [malformed ").removesuffix("]"): request for request in mix}
    assert all(PNG.startswith(b.body or b"x") and b.body != PNG for b in by_kind["truncated"].bodies)
    assert all((b.body or b"").startswith(b"RIFF") for b in by_kind["wrong_file_type"].bodies)
    assert by_kind["wrong_file_type"].headers["Content-Type"] == "image/png"
    assert {b.body for b in by_kind["empty_part"].bodies} == {b""}
    assert all(len(b.body or b"") > HUGE_BODY_BYTES for b in by_kind["huge"].bodies)
    assert by_kind["wrong_content_type"].headers["Content-Type"] == "text/plain"


def test_a_body_of_megabytes_is_huge_at_several_times_its_size() -> None:
    audio = b"RIFF" + bytes(3 * HUGE_BODY_BYTES)
    mix = malformed_requests([upload(audio, content_type="audio/wav")], random.Random(0))
    (huge,) = [request for request in mix if request.name.endswith("[malformed huge]")]
    assert {len(b.body or b"") for b in huge.bodies} == {HUGE_TIMES_LARGEST * len(audio) + 1}
    (other,) = [request for request in mix if request.name.endswith("[malformed wrong_file_type]")]
    assert {b.body for b in other.bodies} == {b"This is a text file, not audio/wav.\n"}


def test_a_form_loses_or_empties_a_field_grows_or_is_mislabelled() -> None:
    valid = encode_form([Part("text", b"a cat"), Part("lang", b"en")])
    mix = malformed_requests([upload(valid, content_type=FORM)], random.Random(1))
    assert kinds(mix) == {"empty_part", "missing_part", "huge", "wrong_content_type"}
    for request in mix:
        for body in request.bodies:
            fields = split_form(body.body or b"")
            if request.name.endswith("[malformed missing_part]"):
                assert len(fields) == 1
            if request.name.endswith("[malformed empty_part]"):
                assert len(fields) == 2 and b"" in {field.content for field in fields}


def test_file_bodies_spoil_the_same_way_for_the_same_seed() -> None:
    valid = [multipart(), multipart(PNG[:50], b"three")]
    first = malformed_pool(valid, random.Random(9), content_type=MULTIPART)
    assert first == malformed_pool(valid, random.Random(9), content_type=MULTIPART)
    counts = {kind: sum(1 for body in first if body.kind == kind) for kind in FILE_MALFORMED}
    assert counts == {kind: 0 if kind == "wrong_content_type" else 16 for kind in FILE_MALFORMED}
