"""The SSE decoder and the OpenAI stream reader: events whatever the chunking, and one request's figures."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.load.streaming import (
    CompletionChunk,
    SseDecoder,
    SseEvent,
    StreamFormatError,
    StreamReader,
    Usage,
    completion_chunk,
    decode_sse,
    read_stream,
    stream_figures,
)


def events_of(body: bytes) -> list[tuple[str, str]]:
    return [(event.event, event.data) for event in decode_sse([(0.0, body)])]


def test_data_lines_are_joined_and_a_blank_line_dispatches() -> None:
    body = b"data: first\ndata: second\n\ndata:no space\n\n"
    assert events_of(body) == [("message", "first\nsecond"), ("message", "no space")]


def test_comments_event_types_ids_and_unknown_fields() -> None:
    body = b": keep-alive\nevent: update\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n: another\ndata: y\n\n"
    decoded = decode_sse([(0.0, body)])
    assert [(e.event, e.data, e.id) for e in decoded] == [("update", "x", "7"), ("message", "y", "7")]


def test_every_line_ending_and_a_leading_byte_order_mark() -> None:
    body = "\ufeffdata: a\r\n\r\ndata: b\r\rdata: c\n\n".encode()
    assert [data for _, data in events_of(body)] == ["a", "b", "c"]


def test_events_without_data_and_an_unfinished_last_event_are_dropped() -> None:
    assert events_of(b"event: ping\n\ndata: whole\n\ndata: torn") == [("message", "whole")]


def test_a_field_without_colon_and_a_data_line_with_only_the_name() -> None:
    # "data" alone is a data field with an empty value: the event's data is "" + "\n" + "z".
    assert events_of(b"data\ndata: z\n\n") == [("message", "\nz")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert events_of(b"data: \xff\xfe ok\n\n") == [("message", "\ufffd\ufffd ok")]


def test_each_event_carries_the_arrival_time_of_the_chunk_that_completed_it() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: one\n", 1.0) == []
    assert decoder.feed(b"\ndata: tw", 2.0) == [SseEvent(t_s=2.0, data="one")]
    assert decoder.feed(b"o\r", 3.0) == []
    # The LF completing the CRLF arrives alone: it must not count as a second (blank) line.
    assert decoder.feed(b"\n", 4.0) == []
    assert decoder.feed(b"\r\n", 5.0) == [SseEvent(t_s=5.0, data="two")]


STREAM_TEXT = st.lists(
    st.tuples(
        st.sampled_from(["data", "event", "id", ":comment", "data", "retry"]),
        st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]), max_size=12),
        st.sampled_from(["\n", "\r\n", "\r"]),
        st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(STREAM_TEXT, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_chunking_never_changes_the_events(lines: list[tuple[str, str, str, bool]], cuts: list[int]) -> None:
    text = "".join(f"{name}: {value}{end}" + (end if blank else "") for name, value, end, blank in lines)
    body = text.encode()
    whole = [(e.event, e.data, e.id) for e in decode_sse([(0.0, body)])]
    points = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    chunks = [(float(i), body[a:b]) for i, (a, b) in enumerate(itertools.pairwise(points))]
    assert [(e.event, e.data, e.id) for e in decode_sse(chunks)] == whole


# --------------------------------------------------------------------------- OpenAI chunks


def chunk_event(payload: object, t_s: float = 0.0) -> SseEvent:
    return SseEvent(t_s=t_s, data=json.dumps(payload))


def test_completion_and_chat_chunks_and_done() -> None:
    text = completion_chunk(chunk_event({"choices": [{"index": 0, "text": "he", "finish_reason": None}]}))
    assert (text.text, text.finish_reason) == ("he", None)
    role = completion_chunk(chunk_event({"choices": [{"delta": {"role": "assistant"}}]}))
    assert role.text == ""
    chat = completion_chunk(chunk_event({"choices": [{"delta": {"content": "llo"}, "finish_reason": "length"}]}))
    assert (chat.text, chat.finish_reason) == ("llo", "length")
    usage = completion_chunk(chunk_event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}))
    assert usage.usage == Usage(prompt_tokens=3, completion_tokens=5) and usage.text == ""
    assert completion_chunk(SseEvent(t_s=1.0, data="[DONE]")).done
    error = completion_chunk(chunk_event({"error": {"message": "overloaded", "code": 503}}))
    assert error.error == "overloaded"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"choices": {"text": "a"}}', "choices: expected a list"),
        ('{"choices": ["a"]}', "choices[0]: expected an object"),
        ('{"choices": [{"text": 5}]}', "expected a string"),
        ('{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": -1}}', "usage.completion_tokens"),
        ('{"choices": [], "usage": {"prompt_tokens": true, "completion_tokens": 1}}', "usage.prompt_tokens"),
        ('{"choices": [], "usage": 3}', "usage: expected an object"),
    ],
)
def test_malformed_chunks_are_named(data: str, fragment: str) -> None:
    with pytest.raises(StreamFormatError) as raised:
        completion_chunk(SseEvent(t_s=0.0, data=data))
    assert fragment in str(raised.value)


# --------------------------------------------------------------------------- figures


def test_figures_of_a_stream_with_usage() -> None:
    chunks = [
        CompletionChunk(t_s=10.05, text=""),  # a role-only first chunk is not the first token
        CompletionChunk(t_s=10.20, text="a"),
        CompletionChunk(t_s=10.25, text="b"),
        CompletionChunk(t_s=10.35, text="c"),
        CompletionChunk(t_s=10.36, usage=Usage(prompt_tokens=7, completion_tokens=3)),
        CompletionChunk(t_s=10.36, done=True),
    ]
    figures = stream_figures(10.0, chunks, ended_s=10.40)
    assert figures.ttft_s == pytest.approx(0.20)
    assert figures.itl_s == pytest.approx((0.05, 0.10))
    assert figures.e2e_s == pytest.approx(0.40)
    assert figures.tpot_s == pytest.approx((0.40 - 0.20) / 2)
    assert (figures.output_tokens, figures.input_tokens, figures.tokens_from_usage) == (3, 7, True)
    assert figures.done and figures.error is None


def test_without_usage_tokens_are_counted_and_the_prompt_is_unknown() -> None:
    chunks = [CompletionChunk(t_s=1.0 + i / 10, text="x") for i in range(4)]
    figures = stream_figures(0.5, chunks, ended_s=1.4)
    assert (figures.output_tokens, figures.input_tokens, figures.tokens_from_usage) == (4, None, False)
    assert not figures.done


def test_a_stream_without_text_or_with_one_token_has_no_tpot() -> None:
    assert stream_figures(0.0, [], ended_s=1.0).ttft_s is None
    one = stream_figures(0.0, [CompletionChunk(t_s=0.3, text="x")], ended_s=0.4)
    assert one.ttft_s == pytest.approx(0.3) and one.tpot_s is None and one.itl_s == ()


def test_an_error_event_is_kept() -> None:
    figures = stream_figures(0.0, [CompletionChunk(t_s=0.1, error="boom")], ended_s=0.2)
    assert figures.error == "boom" and figures.output_tokens == 0


def test_out_of_order_times_are_refused() -> None:
    with pytest.raises(ValueError, match="in order"):
        stream_figures(0.0, [CompletionChunk(t_s=0.3, text="a"), CompletionChunk(t_s=0.2, text="b")], ended_s=1.0)
    with pytest.raises(ValueError, match="before"):
        stream_figures(1.0, [], ended_s=0.5)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=5.0),
    st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=60),
    st.floats(min_value=0.0, max_value=0.5),
)
def test_figures_add_up(ttft_s: float, gaps_s: list[float], tail_s: float) -> None:
    times = [100.0 + ttft_s]
    for gap in gaps_s[1:]:
        times.append(times[-1] + gap)
    chunks = [CompletionChunk(t_s=t, text="t") for t in times]
    figures = stream_figures(100.0, chunks, ended_s=times[-1] + tail_s)
    assert figures.ttft_s is not None
    assert figures.ttft_s + sum(figures.itl_s) + tail_s == pytest.approx(figures.e2e_s, abs=1e-9)
    assert len(figures.itl_s) == figures.output_tokens - 1
    if figures.tpot_s is not None:
        assert figures.tpot_s * (figures.output_tokens - 1) == pytest.approx(sum(figures.itl_s) + tail_s, abs=1e-9)


def test_read_stream_decodes_bytes_as_they_arrived() -> None:
    body = [
        (1.1, b'data: {"choices":[{"text":"hel"}]}\n\n'),
        (1.2, b'data: {"choices":[{"text":"lo"}]}\n\ndata: {"choices":[],"usage":'),
        (1.3, b'{"prompt_tokens":2,"completion_tokens":2}}\n\ndata: [DONE]\n\n'),
    ]
    figures = read_stream(1.0, body, ended_s=1.3)
    assert figures.ttft_s == pytest.approx(0.1) and figures.itl_s == pytest.approx((0.1,))
    assert (figures.output_tokens, figures.input_tokens, figures.done) == (2, 2, True)


# --------------------------------------------------------------------------- one interval's streams


def test_stream_stats_become_client_interval_fields_that_round_trip() -> None:
    from harness.analysis.latency import LatencyHistogram
    from harness.load.streaming import StreamStats
    from harness.model import ClientInterval, RequestLimits, from_json_dict, to_json_dict

    fast, slow = RequestLimits(ttft_ms=250), RequestLimits(ttft_ms=500, tpot_ms=50)
    stats = StreamStats(limits=(fast, slow))
    chunks = [
        CompletionChunk(t_s=0.3, text="a"),
        CompletionChunk(t_s=0.34, text="b"),
        CompletionChunk(t_s=0.4, text="c"),
    ]
    stats.record(stream_figures(0.0, [*chunks, CompletionChunk(t_s=0.38, usage=Usage(5, 3))], ended_s=0.38))
    stats.record(stream_figures(0.0, [CompletionChunk(t_s=0.2, text="x")], ended_s=0.2))
    fields = stats.interval_fields()
    assert fields["streamed"] == 2 and fields["output_tokens"] == 4 and fields["output_tokens_squares"] == 10
    assert fields["input_tokens"] == 5
    assert fields["good_requests"] == {"ttft_ms<=250": 1, "ttft_ms<=500,tpot_ms<=50": 2}
    assert LatencyHistogram.decode(fields["ttft_hdr"]).count == 2
    assert LatencyHistogram.decode(fields["itl_hdr"]).count == 2
    assert LatencyHistogram.decode(fields["tpot_hdr"]).count == 1
    interval = ClientInterval(
        t_start_s=0.0, t_end_s=1.0, process=0, stage="s", users=1, offered_rps=None, scheduled=2, requests=2,
        failures=0, errors={}, latency_hdr="", **fields,
    )  # fmt: skip
    assert from_json_dict(ClientInterval, to_json_dict(interval)) == interval
    # An interval without streams writes empty histograms, and still counts its goodput keys.
    empty = StreamStats(limits=(fast,)).interval_fields()
    assert (empty["ttft_hdr"], empty["good_requests"]) == ("", {"ttft_ms<=250": 0})
    assert stream_figures(0.0, chunks, ended_s=0.5).output_tokens_per_s == pytest.approx(6.0)


# --------------------------------------------------------------------------- reading a stream as it arrives


def openai_pieces(
    texts: list[str], start_s: float, gap_s: float, usage: tuple[int, int] | None
) -> list[tuple[bytes, float]]:
    events = [f"data: {json.dumps({'choices': [{'text': text, 'finish_reason': None}]})}\n\n" for text in texts]
    if usage is not None:
        counts = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
        events.append(f"data: {json.dumps({'choices': [], 'usage': counts})}\n\n")
    events.append("data: [DONE]\n\n")
    return [(event.encode(), start_s + index * gap_s) for index, event in enumerate(events)]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=30), st.lists(st.integers(min_value=0, max_value=3000), max_size=10))
def test_the_incremental_reader_agrees_with_the_whole_stream_however_it_is_cut(tokens: int, cuts: list[int]) -> None:
    pieces = openai_pieces([f"t{i}" for i in range(tokens)], 1.1, 0.02, (4, tokens))
    body = b"".join(piece for piece, _ in pieces)
    # Each byte is sent at its event's time; a piece cut anywhere arrives with its last byte.
    times = [t for piece, t in pieces for _ in piece]
    points = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    arrived = [(times[b - 1], body[a:b]) for a, b in itertools.pairwise(points)]
    reader = StreamReader("openai", 1.0)
    for t_s, piece in arrived:
        reader.feed(piece, t_s)
    assert reader.figures(times[-1]) == read_stream(1.0, arrived, ended_s=times[-1])
    assert reader.figures(times[-1]).output_tokens == tokens and reader.figures(times[-1]).done
    # Pieces that are whole events date each token when it was sent.
    exact = StreamReader("openai", 1.0)
    for piece, t_s in pieces:
        exact.feed(piece, t_s)
    figures = exact.figures(times[-1])
    assert figures.ttft_s == pytest.approx(0.1) and figures.itl_s == pytest.approx((0.02,) * (tokens - 1))


def test_an_openai_stream_without_done_or_a_finish_reason_is_not_whole() -> None:
    reader = StreamReader("openai", 0.0)
    reader.feed(b'data: {"choices":[{"text":"a"}]}\n\n', 0.1)
    assert not reader.figures(0.2).done
    reader.feed(b'data: {"choices":[{"text":"b","finish_reason":"stop"}]}\n\n', 0.3)
    figures = reader.figures(0.3)
    assert figures.done and figures.output_tokens == 2 and figures.itl_s == pytest.approx((0.2,))


def test_plain_sse_counts_every_event_with_data_until_done() -> None:
    reader = StreamReader("sse", 0.0)
    reader.feed(b": hello\n\ndata: one\n\nevent: x\ndata: two\n\n", 0.5)
    reader.feed(b"data: [DONE]\n\n", 0.7)
    figures = reader.figures(0.7)
    assert (figures.output_tokens, figures.ttft_s, figures.itl_s, figures.done) == (2, 0.5, (0.0,), True)


def test_chunks_count_every_piece_that_brought_bytes() -> None:
    reader = StreamReader("chunks", 0.0)
    for t_s, piece in [(0.2, b"abc"), (0.25, b""), (0.3, b"d")]:
        reader.feed(piece, t_s)
    figures = reader.figures(0.35)
    assert figures.output_tokens == 2 and figures.ttft_s == 0.2 and figures.tpot_s == pytest.approx(0.15)
    with pytest.raises(ValueError, match="stream format"):
        StreamReader("ndjson", 0.0)


def test_a_chunk_that_is_not_an_openai_chunk_stops_the_reader() -> None:
    with pytest.raises(StreamFormatError):
        StreamReader("openai", 0.0).feed(b"data: {not json\n\n", 0.1)
