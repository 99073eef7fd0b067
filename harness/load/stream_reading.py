"""Reading a streamed answer from the load generator's HTTP client (Locust's FastHttpSession over geventhttpclient)
as it arrives: each socket read's bytes with the time they came, fed to `streaming.StreamReader`. Imported by the
Locust file only; it calls the client's response object and imports neither locust nor gevent itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.load.streaming import StreamFigures, StreamFormatError, StreamReader


class StreamInterruptedError(Exception):
    """The connection ended before the body did."""


def body_pieces(
    response: Any, headers_at_s: float, clock: Callable[[], float] = time.time
) -> Iterator[tuple[bytes, float]]:
    """The body of a response requested with `stream=True`, as (bytes, arrival time) per socket read, until it ends.

    geventhttpclient's public readers wait for more than what arrived (`read(n)` for n bytes, `readline` for a line
    end, and Locust's `iter_content` on top of `read`), which would hold back a token until later ones fill the
    block; this is their own loop over the socket, handing over each read as it comes. Bytes that came with the
    headers are dated `headers_at_s`. The bytes are copied once per read, out of the parser's buffer.
    """
    parser = response._response
    buffer: bytearray = parser._body_buffer
    if buffer:
        piece = bytes(buffer)
        del buffer[:]
        yield piece, headers_at_s
    while not parser.message_complete:
        sock = parser._sock
        if sock is None:
            raise StreamInterruptedError("the connection closed before the end of the body")
        try:
            data = sock.recv(parser.block_size)
            arrived_s = clock()
            parser.feed(data)
        except BaseException:
            parser.release()
            raise
        # Every read, even one of framing only (the last chunk's terminator): the body ends with the last read.
        piece = bytes(buffer)
        del buffer[:]
        yield piece, arrived_s
        if not data and not parser.message_complete:
            parser.release()
            raise StreamInterruptedError("the connection closed before the end of the body")


@dataclass(frozen=True)
class StreamOutcome:
    """How reading one streamed answer ended: its figures when it was read whole without error, else the kind of
    error (an error count's key) and what happened."""

    figures: StreamFigures | None
    error_kind: str | None = None
    error: str | None = None


def read_streamed_answer(
    response: Any, stream_format: str, sent_s: float, headers_at_s: float, clock: Callable[[], float] = time.time
) -> StreamOutcome:
    """Read a 2xx streamed answer to its end; TTFT and the end-to-end time are measured from `sent_s` (the intended
    send time in open-model stages). A chunk that is not what the format says is read past (the connection stays
    usable) and makes the request a `stream_format` failure; an error the server streamed, `stream_error`; an
    OpenAI stream that ends without `[DONE]` or a finish reason, `stream_incomplete`; a broken connection,
    `stream_interrupted` (`timeout` when it went silent for the request timeout)."""
    reader = StreamReader(stream_format, sent_s)
    pieces = body_pieces(response, headers_at_s, clock)
    # The body ends when its last bytes arrived, not once they have been read.
    ended_s = headers_at_s
    try:
        for piece, ended_s in pieces:
            reader.feed(piece, ended_s)
    except StreamFormatError as error:
        try:
            for _ in pieces:
                pass
        except Exception:
            pass
        return StreamOutcome(None, "stream_format", str(error))
    except Exception as error:
        text = f"{type(error).__name__}: {error}"
        timed_out = "timeout" in type(error).__name__.lower() or "timed out" in str(error).lower()
        return StreamOutcome(None, "timeout" if timed_out else "stream_interrupted", text)
    figures = reader.figures(ended_s)
    if figures.error is not None:
        return StreamOutcome(None, "stream_error", figures.error)
    if not figures.done:
        return StreamOutcome(None, "stream_incomplete", "the stream ended without [DONE] or a finish reason")
    return StreamOutcome(figures)
