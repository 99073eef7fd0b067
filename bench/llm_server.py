"""A streaming LLM server of known timing, for measuring TTFT and inter-token latency as clients see them.

OpenAI-compatible: POST /v1/completions and /v1/chat/completions answer with Server-Sent Events when
`stream` is true (one token per chunk, the usage chunk when `stream_options.include_usage`, then `data: [DONE]`),
else with one JSON body; GET /v1/models, /readyz, /livez, /health, and /stats (how late the server itself wrote
tokens after their due time: its own share of a client's timing error; /stats?reset starts over).
Every request, independently:
  TTFT       ~ Uniform(ttft_min_ms, ttft_max_ms) after the request arrived
  each gap   ~ Uniform(itl_min_ms, itl_max_ms) between consecutive tokens
  tokens     = max_tokens (the server never stops early: as `ignore_eos`), each one word " wN" of `WORDS`
so the quantiles of TTFT and of the gaps are known in closed form (`truth` below). With `--slots N` at most N
requests generate at once and the others queue in arrival order (an engine's batch size): the timing above then
runs from a request's admission, so the capacity is known too (N over the mean request time) and past it queueing
adds to TTFT, which is what a goodput sweep must find. Token i is written at arrival + TTFT + the sum of the first
i gaps, scheduled from the arrival time rather than from the previous write, so the event loop's late wake-ups do
not accumulate along a stream; one pacer task writes every stream's due tokens. Prompt tokens are counted as
whitespace-separated words (the benchmark's tokenizer splits the same way). Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

WORDS = 1000
MODEL = "bench-llm"


@dataclass(frozen=True)
class Timing:
    """The distributions the server draws from, in milliseconds."""

    ttft_min_ms: float = 100.0
    ttft_max_ms: float = 300.0
    itl_min_ms: float = 10.0
    itl_max_ms: float = 30.0

    def ttft_quantile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of TTFT."""
        return self.ttft_min_ms + q / 100.0 * (self.ttft_max_ms - self.ttft_min_ms)

    def itl_quantile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of one inter-token gap."""
        return self.itl_min_ms + q / 100.0 * (self.itl_max_ms - self.itl_min_ms)


def _chunk(kind: str, request_id: str, text: str | None, finish: str | None, usage: dict[str, int] | None) -> bytes:
    if usage is not None:
        choices: list[dict[str, Any]] = []
    elif kind == "chat":
        choices = [{"index": 0, "delta": {"content": text or ""}, "finish_reason": finish}]
    else:
        choices = [{"index": 0, "text": text or "", "finish_reason": finish}]
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    payload: dict[str, Any] = {"id": request_id, "object": obj, "model": MODEL, "choices": choices}
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt of a completion or chat body, as one string."""
    if "messages" in body:
        parts = []
        for message in body["messages"]:
            content = message.get("content", "")
            if isinstance(content, list):  # [{"type": "text", "text": ...}]
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            parts.append(str(content))
        return " ".join(parts)
    prompt = body.get("prompt", "")
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)


class Pacer:
    """Writes every stream's tokens when they are due, from one heap of due times in one task: a coroutine asleep
    per token and stream cost the event loop more than the writes themselves, and past a few hundred streams the
    server, not the client under test, fell behind its own schedule. What it really did is kept: how late each
    token went out, and the time to first token and every gap as written (its own share of any timing error a
    client measures, and the reference a client's own timing is compared with)."""

    def __init__(self) -> None:
        self.due: list[tuple[float, int, _Stream, bytes, asyncio.Future[None] | None]] = []
        self.count = 0
        self.wake = asyncio.Event()
        self.lateness_s: list[float] = []
        self.ttft_s: list[float] = []
        self.gaps_s: list[float] = []

    def reset(self) -> None:
        self.lateness_s.clear()
        self.ttft_s.clear()
        self.gaps_s.clear()

    async def stream(
        self, writer: asyncio.StreamWriter, arrival_s: float, due_s: list[float], chunks: list[bytes]
    ) -> None:
        """Write chunks[i] at due_s[i] (monotonic seconds); returns once the last one is written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream = _Stream(writer, arrival_s)
        for index, (at_s, chunk) in enumerate(zip(due_s, chunks, strict=True)):
            self.count += 1
            heapq.heappush(self.due, (at_s, self.count, stream, chunk, done if index == len(chunks) - 1 else None))
        self.wake.set()
        await done

    async def run(self) -> None:
        while True:
            if not self.due:
                self.wake.clear()
                await self.wake.wait()
                continue
            delay_s = self.due[0][0] - time.monotonic()
            if delay_s > 0:
                self.wake.clear()
                # A new stream's first token may be due sooner than the one waited for.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay_s)
                continue
            while self.due and self.due[0][0] <= (now_s := time.monotonic()):
                # Each write timed on its own: a late pacer writes a long burst, whose last write is not its first.
                at_s, _, stream, chunk, done = heapq.heappop(self.due)
                if not stream.writer.is_closing():
                    stream.writer.write(chunk)
                self.lateness_s.append(now_s - at_s)
                if stream.last_s is None:
                    self.ttft_s.append(now_s - stream.arrival_s)
                else:
                    self.gaps_s.append(now_s - stream.last_s)
                stream.last_s = now_s
                if done is not None and not done.done():
                    done.set_result(None)


@dataclass
class _Stream:
    writer: asyncio.StreamWriter
    arrival_s: float
    last_s: float | None = None


def _percentiles_ms(values_s: list[float], quantiles: tuple[float, ...]) -> dict[str, float]:
    ordered = sorted(values_s)
    return {
        f"p{q:g}": round(1000.0 * ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))], 3) for q in quantiles
    }


class LlmServer:
    def __init__(self, timing: Timing, seed: int, default_max_tokens: int, slots: int = 0) -> None:
        self.timing = timing
        self.rng = random.Random(seed)
        self.default_max_tokens = default_max_tokens
        self.requests = 0
        # asyncio's semaphore admits waiters in arrival order.
        self.slots = asyncio.Semaphore(slots) if slots > 0 else None
        self.pacer = Pacer()

    def stats(self) -> dict[str, Any]:
        """What the server really did since the last reset (GET /stats): how late it wrote tokens after their due
        time, and the time to first token and every gap as written, in ms."""
        pacer = self.pacer
        if not pacer.lateness_s:
            return {"tokens": 0}
        return {
            "tokens": len(pacer.lateness_s),
            "lateness_ms": _percentiles_ms(pacer.lateness_s, (50, 99, 99.9, 100)),
            "ttft_ms": _percentiles_ms(pacer.ttft_s, (50, 95, 99)) if pacer.ttft_s else {},
            "itl_ms": _percentiles_ms(pacer.gaps_s, (50, 95, 99)) if pacer.gaps_s else {},
        }

    async def admitted(self, writer: asyncio.StreamWriter, path: str, body: dict[str, Any], arrival_s: float) -> None:
        """Generate once a slot is free (at once without --slots), timing the answer from the admission."""
        if self.slots is None:
            await self.generate(writer, path, body, arrival_s)
            return
        async with self.slots:
            await self.generate(writer, path, body, time.monotonic())

    def plan(self, tokens: int) -> list[float]:
        """Seconds after arrival at which each token is due."""
        t = self.timing
        due_s = self.rng.uniform(t.ttft_min_ms, t.ttft_max_ms) / 1000.0
        times = [due_s]
        for _ in range(tokens - 1):
            due_s += self.rng.uniform(t.itl_min_ms, t.itl_max_ms) / 1000.0
            times.append(due_s)
        return times

    async def generate(self, writer: asyncio.StreamWriter, path: str, body: dict[str, Any], arrival_s: float) -> None:
        kind = "chat" if path.startswith("/v1/chat") else "text_completion"
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.default_max_tokens)
        prompt_tokens = len(prompt_text(body).split())
        due = self.plan(max_tokens)
        self.requests += 1
        request_id = f"cmpl-{uuid.uuid4().hex}"
        words = [f" w{self.rng.randrange(WORDS)}" for _ in due]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens}
        usage["total_tokens"] = prompt_tokens + max_tokens
        if not body.get("stream"):
            await asyncio.sleep(max(0.0, arrival_s + due[-1] - time.monotonic()))
            text = "".join(words)
            choice = {"index": 0, "finish_reason": "length"}
            choice.update({"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text})
            obj = "chat.completion" if kind == "chat" else "text_completion"
            answer = {"id": request_id, "object": obj, "model": MODEL, "choices": [choice], "usage": usage}
            _write_response(writer, b"200 OK", json.dumps(answer).encode(), b"application/json")
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # Every chunk is encoded now; the pacer only writes bytes when they are due (see Pacer).
        chunks = [
            _chunked(_chunk(kind, request_id, word, "length" if index == len(due) - 1 else None, None))
            for index, word in enumerate(words)
        ]
        tail = b""
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            tail += _chunk(kind, request_id, None, None, usage)
        chunks[-1] += _chunked(tail + b"data: [DONE]\n\n") + b"0\r\n\r\n"
        await self.pacer.stream(writer, arrival_s, [arrival_s + due_s for due_s in due], chunks)
        await writer.drain()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                arrival_s = time.monotonic()
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                length = 0
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                raw = await reader.readexactly(length) if length else b""
                if method == "POST" and path.startswith(("/v1/completions", "/v1/chat/completions")):
                    try:
                        body = json.loads(raw)
                        assert isinstance(body, dict)
                    except (ValueError, AssertionError):
                        _write_response(writer, b"400 Bad Request", b'{"error":{"message":"body: not a JSON object"}}')
                    else:
                        await self.admitted(writer, path, body, arrival_s)
                elif method == "GET" and path.startswith("/stats"):
                    _write_response(writer, b"200 OK", json.dumps(self.stats()).encode())
                    if "reset" in path:
                        self.pacer.reset()
                elif method == "GET" and path.startswith("/v1/models"):
                    models = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
                    _write_response(writer, b"200 OK", json.dumps(models).encode())
                elif method == "GET" and path.startswith(("/readyz", "/livez", "/health")):
                    _write_response(writer, b"200 OK", b"ok", b"text/plain")
                else:
                    _write_response(writer, b"404 Not Found", b'{"error":{"message":"not found"}}')
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


def _write_response(
    writer: asyncio.StreamWriter, status: bytes, body: bytes, content_type: bytes = b"application/json"
) -> None:
    writer.write(
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
        b"" + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def main_async(args: argparse.Namespace) -> None:
    timing = Timing(args.ttft_min_ms, args.ttft_max_ms, args.itl_min_ms, args.itl_max_ms)
    server = LlmServer(timing, args.seed, args.default_max_tokens, args.slots)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=4096)
    pacer = asyncio.create_task(server.pacer.run())
    try:
        async with listener:
            await asyncio.wait_for(listener.serve_forever(), timeout=args.max_lifetime_s)
    finally:
        pacer.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Timing()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-min-ms", type=float, default=defaults.ttft_min_ms)
    parser.add_argument("--ttft-max-ms", type=float, default=defaults.ttft_max_ms)
    parser.add_argument("--itl-min-ms", type=float, default=defaults.itl_min_ms)
    parser.add_argument("--itl-max-ms", type=float, default=defaults.itl_max_ms)
    parser.add_argument("--default-max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=0, help="requests generated at once; 0: no limit")
    parser.add_argument("--max-lifetime-s", type=float, default=3600.0, help="the server stops itself after this")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt, TimeoutError):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
