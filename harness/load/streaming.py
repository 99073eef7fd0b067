"""Streamed answers as the load generator reads them: Server-Sent Events decoded from body chunks as they
arrive, OpenAI-compatible completion chunks read from those events, and one request's figures (time to first
token, inter-token gaps, time per output token, tokens) from their arrival times. Pure: bytes and times in,
records out; the caller owns the socket and the clock.

Definitions (those of vLLM's benchmark_serving and inference-perf, which GuideLLM's differ from only in ITL):
- TTFT: from the send time the caller passes (the intended one in open-model stages) to the first chunk that
  carries text.
- ITL: every gap between consecutive chunks that carry text (one sample per gap).
- TPOT: (end-to-end - TTFT) / (output tokens - 1), one sample per request with at least two output tokens;
  GuideLLM calls this per-request mean "inter-token latency".
- Output tokens: the server's `usage.completion_tokens` when its final chunk reports usage, else the number of
  chunks that carried text (servers stream one token per chunk unless they batch them).
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from harness.analysis.latency import LatencyHistogram
from harness.analysis.tokens import meets_limits
from harness.model import ClientInterval, RequestLimits

DONE = "[DONE]"
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    """One dispatched Server-Sent Event: its type, its data (the `data:` lines joined by newlines) and the
    arrival time of the chunk that completed it."""

    t_s: float
    data: str
    event: str = "message"
    id: str | None = None


@dataclass
class SseDecoder:
    """Incremental Server-Sent Events decoder (the WHATWG HTML standard's event stream interpretation): feed
    body chunks as they arrive, get the events each one completes.

    Lines end in CRLF, LF or CR (a CRLF split across two chunks is one line end); a line starting with ':' is a
    comment; `data` fields accumulate, a blank line dispatches; an event with no data is not dispatched; an
    unfinished event at the end of the stream is dropped, as browsers drop it. UTF-8 split across chunks is
    decoded whole; invalid bytes become U+FFFD.
    """

    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    _line: list[str] = field(default_factory=list)
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _after_cr: bool = False
    _started: bool = False

    def feed(self, chunk: bytes, t_s: float) -> list[SseEvent]:
        """The events completed by `chunk`, which arrived at `t_s`."""
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr or "\r" in text:
            lines = self._split_any(text)
        else:
            # The common case, lines ending in LF alone: str.split is the cheapest way to find them (per token, a
            # loop over characters in Python once cost more than the rest of reading it together).
            lines = text.split("\n")
            self._line.append(lines.pop())
            if lines:
                lines[0], self._line[:-1] = "".join(self._line[:-1]) + lines[0], []
        events: list[SseEvent] = []
        for line in lines:
            event = self._end_line(line, t_s)
            if event is not None:
                events.append(event)
        return events

    def _split_any(self, text: str) -> list[str]:
        """The lines `text` completes, ending in CRLF, LF or CR (a CRLF may be split across pieces)."""
        start = 0
        if self._after_cr and text.startswith("\n"):
            # The LF of a CRLF whose CR ended the previous piece of text.
            start = 1
        lines = []
        for end in _LINE_END.finditer(text, start):
            self._line.append(text[start : end.start()])
            start = end.end()
            lines.append("".join(self._line))
            self._line.clear()
        if text:
            # A CR at the very end may be the first half of a CRLF split across pieces.
            self._after_cr = text.endswith("\r")
        if start < len(text):
            self._line.append(text[start:])
        return lines

    def _end_line(self, line: str, t_s: float) -> SseEvent | None:
        if not line:
            return self._dispatch(t_s)
        if line.startswith("data: "):
            self._data.append(line[6:])
            return None
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self, t_s: float) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(t_s=t_s, data="\n".join(data), event=event or "message", id=self._id)


def decode_sse(chunks: Sequence[tuple[float, bytes]]) -> list[SseEvent]:
    """Every event of a whole stream given as (arrival time, bytes) chunks."""
    decoder = SseDecoder()
    return [event for t_s, chunk in chunks for event in decoder.feed(chunk, t_s)]


# --------------------------------------------------------------------------- OpenAI-compatible completion chunks


@dataclass(frozen=True)
class Usage:
    """Token counts as the server reports them."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class CompletionChunk:
    """One `data:` payload of an OpenAI-compatible completion stream (`/v1/completions` or
    `/v1/chat/completions`): its text, and the usage, finish reason or error it carries."""

    t_s: float
    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    error: str | None = None
    done: bool = False


class StreamFormatError(ValueError):
    """A stream event that is not an OpenAI-compatible completion chunk; the message says what was wrong."""


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StreamFormatError(f"usage: expected an object, got {type(raw).__name__}")
    counts = {key: raw.get(key) for key in ("prompt_tokens", "completion_tokens")}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StreamFormatError(f"usage.{key}: expected a whole number >= 0, got {value!r}")
    return Usage(prompt_tokens=int(raw["prompt_tokens"]), completion_tokens=int(raw["completion_tokens"]))


def _choice_text(choice: Any) -> tuple[str, str | None]:
    if not isinstance(choice, dict):
        raise StreamFormatError(f"choices[0]: expected an object, got {type(choice).__name__}")
    finish = choice.get("finish_reason")
    if "delta" in choice:  # chat: {"delta": {"role"?, "content"?}}
        delta = choice["delta"]
        text = delta.get("content") if isinstance(delta, dict) else None
    else:  # completions: {"text": ...}
        text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise StreamFormatError(f"choices[0] text: expected a string, got {type(text).__name__}")
    return text or "", finish if isinstance(finish, str) else None


def completion_chunk(event: SseEvent) -> CompletionChunk:
    """Read one event of an OpenAI-compatible stream; `[DONE]` is a chunk with `done`. StreamFormatError when
    the data is not JSON or not shaped like a completion chunk."""
    if event.data.strip() == DONE:
        return CompletionChunk(t_s=event.t_s, done=True)
    try:
        payload = json.loads(event.data)
    except json.JSONDecodeError as error:
        raise StreamFormatError(f"event data is not JSON ({error.msg} at {error.pos}): {event.data[:80]!r}") from None
    if not isinstance(payload, dict):
        raise StreamFormatError(f"event data: expected a JSON object, got {type(payload).__name__}")
    if "error" in payload:
        reported = payload["error"]
        message = reported.get("message") if isinstance(reported, dict) else reported
        return CompletionChunk(t_s=event.t_s, error=str(message))
    choices = payload.get("choices") or []
    if not isinstance(choices, list):
        raise StreamFormatError(f"choices: expected a list, got {type(choices).__name__}")
    text, finish = _choice_text(choices[0]) if choices else ("", None)
    return CompletionChunk(t_s=event.t_s, text=text, usage=_usage(payload.get("usage")), finish_reason=finish)


# --------------------------------------------------------------------------- one request's figures


@dataclass(frozen=True)
class StreamFigures:
    """One streamed request's figures, in seconds from its send time and in tokens."""

    ttft_s: float | None
    # Every gap between consecutive chunks that carried text.
    itl_s: tuple[float, ...]
    tpot_s: float | None
    e2e_s: float
    output_tokens: int
    # None when the server did not report usage (the harness does not tokenize prompts).
    input_tokens: int | None
    tokens_from_usage: bool
    # The stream ended with `[DONE]` (or reported an error, see `error`).
    done: bool
    error: str | None = None

    @property
    def output_tokens_per_s(self) -> float | None:
        """Output tokens over the whole exchange (GuideLLM's per-request tokens per second); None for no time."""
        return self.output_tokens / self.e2e_s if self.e2e_s > 0 else None


def stream_figures(sent_s: float, chunks: Sequence[CompletionChunk], ended_s: float) -> StreamFigures:
    """The figures of a request sent at `sent_s` whose body ended at `ended_s`, from its chunks in arrival order."""
    usage = next((chunk.usage for chunk in reversed(chunks) if chunk.usage is not None), None)
    error = next((chunk.error for chunk in chunks if chunk.error is not None), None)
    arrivals = [chunk.t_s for chunk in chunks if chunk.text]
    return _figures(sent_s, arrivals, usage, any(chunk.done for chunk in chunks), error, ended_s)


def _figures(
    sent_s: float, arrivals: Sequence[float], usage: Usage | None, done: bool, error: str | None, ended_s: float
) -> StreamFigures:
    if ended_s < sent_s:
        raise ValueError(f"ended_s={ended_s} is before sent_s={sent_s}")
    if any(b < a for a, b in itertools.pairwise(arrivals)) or (arrivals and arrivals[0] < sent_s):
        raise ValueError("chunks must arrive in order, after the send time")
    output_tokens = usage.completion_tokens if usage is not None else len(arrivals)
    ttft_s = arrivals[0] - sent_s if arrivals else None
    e2e_s = ended_s - sent_s
    tpot_s = (e2e_s - ttft_s) / (output_tokens - 1) if ttft_s is not None and output_tokens > 1 else None
    return StreamFigures(
        ttft_s=ttft_s,
        itl_s=tuple(b - a for a, b in itertools.pairwise(arrivals)),
        tpot_s=tpot_s,
        e2e_s=e2e_s,
        output_tokens=output_tokens,
        input_tokens=usage.prompt_tokens if usage is not None else None,
        tokens_from_usage=usage is not None,
        done=done,
        error=error,
    )


def read_stream(sent_s: float, chunks: Sequence[tuple[float, bytes]], ended_s: float) -> StreamFigures:
    """The figures of an OpenAI-compatible SSE body received as (arrival time, bytes) chunks."""
    return stream_figures(sent_s, [completion_chunk(event) for event in decode_sse(chunks)], ended_s)


class StreamReader:
    """One streamed answer read piece by piece as it arrives, keeping only what its figures need (the arrival time
    of each token, the usage, the end); `figures` when the body has ended. Formats (`requests[].stream`):

    - openai: OpenAI-compatible completion chunks in Server-Sent Events (`completion_chunk`); a chunk with text is
      a token; the stream is whole once `[DONE]` or a finish reason came. StreamFormatError for a chunk that is not
      one.
    - sse: Server-Sent Events; each event with data is a token, except a `[DONE]` one, which ends it.
    - chunks: any body; each piece that arrived is a token.
    """

    def __init__(self, stream_format: str, sent_s: float) -> None:
        if stream_format not in ("openai", "sse", "chunks"):
            raise ValueError(f"stream format {stream_format!r}: expected openai, sse or chunks")
        self.format = stream_format
        self.sent_s = sent_s
        self.arrivals: list[float] = []
        self.usage: Usage | None = None
        self.error: str | None = None
        self.done = False
        self._decoder = SseDecoder()

    def feed(self, piece: bytes, t_s: float) -> None:
        """Add the body bytes that arrived at `t_s`."""
        if self.format == "chunks":
            if piece:
                self.arrivals.append(t_s)
            return
        for event in self._decoder.feed(piece, t_s):
            if self.format == "sse":
                if event.data.strip() == DONE:
                    self.done = True
                else:
                    self.arrivals.append(event.t_s)
                continue
            chunk = completion_chunk(event)
            if chunk.text:
                self.arrivals.append(chunk.t_s)
            self.usage = chunk.usage or self.usage
            self.error = self.error or chunk.error
            self.done = self.done or chunk.done or chunk.finish_reason is not None

    @property
    def whole(self) -> bool:
        """Whether the stream said it was complete (openai: `[DONE]` or a finish reason); an sse or chunks stream
        is whole when its body ended, which the caller knows."""
        return self.done or self.format != "openai"

    def figures(self, ended_s: float) -> StreamFigures:
        """The request's figures, its body having ended at `ended_s`."""
        return _figures(self.sent_s, self.arrivals, self.usage, self.whole, self.error, ended_s)


# --------------------------------------------------------------------------- one interval's streamed requests


@dataclass
class StreamStats:
    """The streamed requests of one load-generator interval, accumulated as ClientInterval carries them."""

    # The goodput objectives' limits: requests meeting each are counted under its key.
    limits: tuple[RequestLimits, ...] = ()
    ttft: LatencyHistogram = field(default_factory=LatencyHistogram)
    itl: LatencyHistogram = field(default_factory=LatencyHistogram)
    tpot: LatencyHistogram = field(default_factory=LatencyHistogram)
    streamed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_tokens_squares: int = 0
    good_requests: dict[str, int] = field(default_factory=dict)

    def record(self, figures: StreamFigures) -> None:
        """Add one stream read to its end without error."""
        self.streamed += 1
        if figures.ttft_s is not None:
            self.ttft.record_s(figures.ttft_s)
        for gap_s in figures.itl_s:
            self.itl.record_s(gap_s)
        if figures.tpot_s is not None:
            self.tpot.record_s(figures.tpot_s)
        self.input_tokens += figures.input_tokens or 0
        self.output_tokens += figures.output_tokens
        self.output_tokens_squares += figures.output_tokens**2
        for limits in self.limits:
            met = meets_limits(limits, figures.ttft_s, figures.tpot_s, figures.e2e_s)
            self.good_requests[limits.key] = self.good_requests.get(limits.key, 0) + int(met)

    def interval_fields(self) -> dict[str, Any]:
        """The ClientInterval fields of these streams (keyword arguments of its constructor); empty histograms
        are written as "" so intervals without streams stay as small as before."""
        values: dict[str, Any] = {
            "streamed": self.streamed,
            "ttft_hdr": self.ttft.encode() if self.ttft.count else "",
            "itl_hdr": self.itl.encode() if self.itl.count else "",
            "tpot_hdr": self.tpot.encode() if self.tpot.count else "",
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "output_tokens_squares": self.output_tokens_squares,
            "good_requests": {limits.key: self.good_requests.get(limits.key, 0) for limits in self.limits},
        }
        assert set(values) <= {f.name for f in fields(ClientInterval)}
        return values
