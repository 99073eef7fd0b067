"""Example generative service for the harness: a small character-level language model (`tinylm`) computed on the
CPU token by token, behind an OpenAI-compatible API that streams (Server-Sent Events) as LLM servers do.

Endpoints: POST /v1/completions and /v1/chat/completions (`stream`, `stream_options.include_usage`, `max_tokens`,
`temperature`, `top_p`, `seed`, `ignore_eos`), GET /v1/models; BentoML's /metrics, where the engine also exports
what vLLM's does under vLLM's names (`vllm:num_requests_running`, `vllm:num_requests_waiting`,
`vllm:kv_cache_usage_perc`, token counters, time to first token), so a scrape set up for vLLM reads it too.
One token is one character. Knobs (environment): LLM_MAX_RUNNING=<sequences decoded together>,
LLM_KV_CACHE_TOKENS=<positions in the KV-cache pool>.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, cast

# One BLAS thread, set before numpy is first imported: the model's matrices are small, and BLAS threads
# spinning beside other processes on a 2-core machine made a decode step 15 times slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import bentoml
from engine import Engine, GenerationRequest, Token
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tinylm import ModelConfig, build_model, describe

MODEL_NAME = "tiny-char-lm"
DEFAULT_MAX_TOKENS = 16


def _read_positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: expected a whole number >= 1")
    return value


# Read at import so that `bentoml serve` exits at once on a bad value instead of restarting workers forever.
MAX_RUNNING = _read_positive_int("LLM_MAX_RUNNING", 16)
KV_CACHE_TOKENS = _read_positive_int("LLM_KV_CACHE_TOKENS", 16384)
if ModelConfig().context_tokens > KV_CACHE_TOKENS:
    raise ValueError(f"LLM_KV_CACHE_TOKENS={KV_CACHE_TOKENS}: must hold one context ({ModelConfig().context_tokens})")


# --------------------------------------------------------------------------- request bodies (OpenAI's names)

_LENIENT = ConfigDict(extra="ignore")  # as vLLM: fields this server does not use are ignored


class StreamOptions(BaseModel):
    model_config = _LENIENT
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = _LENIENT
    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1, strict=True)] = DEFAULT_MAX_TOKENS
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    seed: int | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False


class CompletionRequest(_Sampling):
    prompt: Annotated[str, Field(min_length=1)] | Annotated[list[int], Field(min_length=1)]


class ChatMessage(BaseModel):
    model_config = _LENIENT
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]


def chat_prompt(messages: list[ChatMessage]) -> str:
    """The chat template: one `role: content` line per message, then the assistant's turn."""
    return "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant: "


class RequestError(Exception):
    """A request this server refuses, with its HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status)


def _validation_error(error: ValidationError) -> RequestError:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if not str(part).startswith(("str", "list[")))
    return RequestError(400, f"{where or 'body'}: {first['msg']}", param=where or None)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise RequestError(415, f"Content-Type {media_type!r} is not supported: send application/json")
    try:
        raw = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, f"body is not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise RequestError(400, "body: expected a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise _validation_error(error) from None


# --------------------------------------------------------------------------- the engine's metrics


class PrometheusMetrics:
    """The engine's state and counts as vLLM names them, in BentoML's /metrics (prometheus_client is imported
    here, in the worker, after BentoML has pointed it at its multiprocess directory)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        labels = ["model_name"]
        self._running = prom.Gauge(
            "vllm:num_requests_running", "Sequences decoded together", labels, multiprocess_mode="livesum"
        ).labels(MODEL_NAME)
        self._waiting = prom.Gauge(
            "vllm:num_requests_waiting", "Requests queued for a slot", labels, multiprocess_mode="livesum"
        ).labels(MODEL_NAME)
        self._kv = prom.Gauge(
            "vllm:kv_cache_usage_perc", "Share of KV-cache blocks reserved (0-1)", labels, multiprocess_mode="livemax"
        ).labels(MODEL_NAME)
        self._prompt = prom.Counter("vllm:prompt_tokens", "Prompt tokens prefilled", labels).labels(MODEL_NAME)
        self._generated = prom.Counter("vllm:generation_tokens", "Tokens generated", labels).labels(MODEL_NAME)
        self._ttft = prom.Histogram(
            "vllm:time_to_first_token_seconds",
            "From arrival at the engine to the first token",
            labels,
            buckets=(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
        ).labels(MODEL_NAME)

    def state(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        self._running.set(running)
        self._waiting.set(waiting)
        self._kv.set(kv_cache_usage)

    def prompt_tokens(self, count: int) -> None:
        self._prompt.inc(count)

    def generation_tokens(self, count: int) -> None:
        self._generated.inc(count)

    def first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)


# --------------------------------------------------------------------------- the OpenAI-compatible API


def _service() -> TinyLLM:
    return cast(TinyLLM, bentoml.get_current_service())


def _chunk(kind: str, request_id: str, created: int, text: str | None, finish: str | None, first: bool) -> str:
    if kind == "chat":
        delta: dict[str, str] = {"role": "assistant", "content": ""} if first else {}
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish}
        obj = "text_completion"
    payload = {"id": request_id, "object": obj, "created": created, "model": MODEL_NAME, "choices": [choice]}
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _stream(
    request: Request, kind: str, tokens: AsyncIterator[Token], prompt_tokens: int, include_usage: bool
) -> AsyncIterator[str]:
    service, request_id, created = _service(), f"cmpl-{uuid.uuid4().hex}", int(time.time())
    generated = 0
    if kind == "chat":
        yield _chunk(kind, request_id, created, None, None, first=True)
    try:
        async for token in tokens:
            # Writes to a client that left are dropped without an error (uvicorn, ASGI 2.4): ask instead.
            if await request.is_disconnected():
                return
            if token.token is not None:
                generated += 1
                text = service.model.tokenizer.decode_one(token.token)
                yield _chunk(kind, request_id, created, text, None, first=False)
            if token.finish_reason is not None:
                finish = token.finish_reason
                yield _chunk(kind, request_id, created, "" if kind == "chat" else None, finish, first=False)
    finally:
        # A client that left cancels this generator: the engine's must end too, to free its slot and blocks.
        await cast(Any, tokens).aclose()
    if include_usage:
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        usage = {"id": request_id, "object": obj, "created": created, "model": MODEL_NAME, "choices": []}
        usage["usage"] = _usage(prompt_tokens, generated)
        yield f"data: {json.dumps(usage, separators=(',', ':'))}\n\n"
    yield "data: [DONE]\n\n"


async def _answer(kind: str, tokens: AsyncIterator[Token], prompt_tokens: int) -> JSONResponse:
    text, finish = [], None
    tokenizer = _service().model.tokenizer
    async for token in tokens:
        if token.token is not None:
            text.append(tokenizer.decode_one(token.token))
        finish = token.finish_reason or finish
    content = "".join(text)
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
        obj = "chat.completion"
    else:
        choice, obj = {"index": 0, "text": content}, "text_completion"
    choice["finish_reason"] = finish
    body = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": obj,
        "created": int(time.time()),
        "model": MODEL_NAME,
        "choices": [choice],
        "usage": _usage(prompt_tokens, len(text)),
    }
    return JSONResponse(body)


async def _generate(request: Request, kind: str, body: _Sampling, prompt: list[int]) -> Response:
    if body.model is not None and body.model != MODEL_NAME:
        raise RequestError(404, f"The model `{body.model}` does not exist.", param="model", code="model_not_found")
    service = _service()
    context = service.model.config.context_tokens
    if len(prompt) + body.max_tokens > context:
        raise RequestError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{len(prompt) + body.max_tokens} tokens ({len(prompt)} in the prompt, {body.max_tokens} in the "
            "completion).",
            param="max_tokens",
        )
    vocab = service.model.tokenizer.vocab_size
    if any(not 0 <= token < vocab for token in prompt):
        raise RequestError(400, f"prompt: token ids must be within 0..{vocab - 1}", param="prompt")
    wanted = GenerationRequest(prompt, body.max_tokens, body.temperature, body.top_p, body.seed, body.ignore_eos)
    # The engine's pool holds at least one whole context (checked at import), so it admits every request left.
    tokens = service.engine.generate(wanted)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(
            _stream(request, kind, tokens, len(prompt), include_usage), media_type="text/event-stream"
        )
    return await _answer(kind, tokens, len(prompt))


async def completions(request: Request) -> Response:
    try:
        body = await _body(request, CompletionRequest)
        prompt = body.prompt if isinstance(body.prompt, list) else _service().model.tokenizer.encode(body.prompt)
        return await _generate(request, "completion", body, prompt)
    except RequestError as error:
        return error.response()


async def chat_completions(request: Request) -> Response:
    try:
        body = await _body(request, ChatRequest)
        return await _generate(request, "chat", body, _service().model.tokenizer.encode(chat_prompt(body.messages)))
    except RequestError as error:
        return error.response()


async def models(request: Request) -> Response:
    card = {"id": MODEL_NAME, "object": "model", "owned_by": "harness", **describe(_service().model)}
    return JSONResponse({"object": "list", "data": [card]})


openai_api = Starlette(
    routes=[
        Route("/completions", completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/models", models, methods=["GET"]),
    ]
)


@bentoml.asgi_app(openai_api, path="/v1")  # type: ignore[untyped-decorator]
@bentoml.service(
    # A stream lasts as long as its tokens take: the timeout bounds a whole generation, not a first byte.
    traffic={"timeout": 300},
    # Access logs cost noticeable CPU per request under load; enable them through BentoML config if needed.
    logging={"access": {"enabled": False}},
    # One worker holds the model and the engine: its requests are batched together, as on one accelerator.
    workers=1,
)
class TinyLLM:
    """A small language model, fitted at start-up, generating with continuous batching."""

    def __init__(self) -> None:
        self.model = build_model()
        self.engine = Engine(self.model, MAX_RUNNING, KV_CACHE_TOKENS, PrometheusMetrics())
