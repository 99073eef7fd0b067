"""harness.analysis.failures: what failed requests got back, sampled within bounds, redacted, and described."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.analysis.failures import (
    SAMPLE_CHARS,
    SAMPLES_PER_KIND,
    answer_sample,
    describe_errors,
    keep_sample,
    merge_samples,
)


def test_an_answer_is_sampled_as_one_short_line_of_its_body() -> None:
    body = b'{"error": "1 validation error for Input\\n  input_series\\n    Field required"}'
    assert (
        answer_sample(400, body, None, ())
        == '{"error": "1 validation error for Input\\n input_series\\n Field required"}'
    )
    assert answer_sample(400, b'{"a":\n\t1}', None, ()) == '{"a": 1}'
    assert answer_sample(502, b"", None, ()) == "(empty body)"
    assert answer_sample(500, "text already", None, ()) == "text already"
    long = answer_sample(413, b"x" * 100_000, None, ())
    assert len(long) == SAMPLE_CHARS and long.endswith("...")
    assert answer_sample(500, b"\xff\xfe caf\xc3\xa9", None, ()) == "\ufffd\ufffd café"


def test_no_answer_is_sampled_as_the_clients_error() -> None:
    assert answer_sample(0, None, ConnectionRefusedError(111, "Connection refused"), ()) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert answer_sample(0, None, TimeoutError("timed out"), ()) == "TimeoutError: timed out"
    assert answer_sample(0, None, None, ()) == "(no answer)"


def test_the_requests_header_values_are_redacted_whole_and_by_token() -> None:
    headers = ["Bearer s3cr3t-token", "key-12345"]
    said = answer_sample(401, b"bad token s3cr3t-token for Bearer s3cr3t-token; key key-12345", None, headers)
    assert "s3cr3t" not in said and "12345" not in said
    assert said == "bad token <redacted> for <redacted>; key <redacted>"


def test_a_kind_keeps_at_most_its_share_and_is_not_read_once_full() -> None:
    samples: dict[str, list[str]] = {}
    calls: list[int] = []

    def make(text: str) -> str:
        calls.append(1)
        return text

    for text in ("a", "a", "b", "c", "d"):
        keep_sample(samples, "http_400", lambda text=text: make(text))
    assert samples == {"http_400": ["a", "b"][:SAMPLES_PER_KIND]}
    assert len(calls) == 3, "once a kind is full its answers are not even read"


@given(st.lists(st.dictionaries(st.sampled_from(["http_400", "timeout"]), st.lists(st.text(max_size=3), max_size=4))))
def test_merged_samples_are_bounded_distinct_and_first_seen(per_interval: list[dict[str, list[str]]]) -> None:
    merged = merge_samples(per_interval)
    for kind, kept in merged.items():
        assert len(kept) <= SAMPLES_PER_KIND and len(set(kept)) == len(kept)
        seen = list(dict.fromkeys(text for samples in per_interval for text in samples.get(kind, [])))
        assert kept == seen[:SAMPLES_PER_KIND]


def test_errors_are_described_most_frequent_first_with_a_sample() -> None:
    described = describe_errors(
        {"timeout": 3, "http_400": 200, "connection_error": 3},
        {"http_400": ["{'detail': 'bad'}"], "timeout": ["TimeoutError: timed out"]},
        206,
    )
    assert described == (
        "206 of 206 requests failed: http_400 x200 (answered: '{'detail': 'bad'}'); connection_error x3; "
        "timeout x3 (error: 'TimeoutError: timed out')"
    )
