"""A streaming LLM server of known timing, for measuring TTFT and inter-token latency as clients see them.

OpenAI-compatible: POST /v1/completions and /v1/chat/completions answer with Server-Sent Events when
`stream` is true (one token per chunk, the usage chunk when `stream_options.include_usage`, then `data: [DONE]`),
else with one JSON body; GET /v1/models, /readyz, /livez, /health. Every request, independently:
  TTFT       ~ Uniform(ttft_min_ms, ttft_max_ms) after the request arrived
  each gap   ~ Uniform(itl_min_ms, itl_max_ms) between consecutive tokens
  tokens     = max_tokens (the server never stops early: as `ignore_eos`), each one word " wN" of `WORDS`
so the quantiles of TTFT and of the gaps are known in closed form (`truth` below). Token i is written at
arrival + TTFT + the sum of the first i gaps, scheduled from the arrival time rather than from the previous write,
so the event loop's late wake-ups do not accumulate along a stream. Prompt tokens are counted as
whitespace-separated words (the benchmark's tokenizer splits the same way). Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


class LlmServer:
    def __init__(self, timing: Timing, seed: int, default_max_tokens: int) -> None:
        self.timing = timing
        self.rng = random.Random(seed)
        self.default_max_tokens = default_max_tokens
        self.requests = 0

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
        for index, (due_s, word) in enumerate(zip(due, words, strict=True)):
            await asyncio.sleep(max(0.0, arrival_s + due_s - time.monotonic()))
            finish = "length" if index == len(due) - 1 else None
            writer.write(_chunked(_chunk(kind, request_id, word, finish, None)))
            await writer.drain()
        tail = b""
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            tail += _chunk(kind, request_id, None, None, usage)
        writer.write(_chunked(tail + b"data: [DONE]\n\n") + b"0\r\n\r\n")
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
                        await self.generate(writer, path, body, arrival_s)
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
    server = LlmServer(timing, args.seed, args.default_max_tokens)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=4096)
    async with listener:
        await asyncio.wait_for(listener.serve_forever(), timeout=args.max_lifetime_s)


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
    parser.add_argument("--max-lifetime-s", type=float, default=3600.0, help="the server stops itself after this")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt, TimeoutError):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
