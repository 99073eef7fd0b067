"""Integration tests of the LLM example (examples/llm) served by a real `bentoml serve`: streams that arrive token
by token, usage that counts what was streamed, the chat and completion shapes, seeds, 4xx answers naming the
problem, and the engine's metrics on /metrics."""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.load.streaming import SseDecoder, completion_chunk, stream_figures

if TYPE_CHECKING:
    from conftest import BentoServers, ServedBento

pytestmark = pytest.mark.integration

LLM_DIR = Path(__file__).resolve().parents[2] / "examples" / "llm"
SERVICE = "service:TinyLLM"
MODEL = "tiny-char-lm"
TIMEOUT_S = 60.0
CONTEXT_TOKENS = 1024


@pytest.fixture(scope="module")
def llm(bentoml_servers: BentoServers) -> ServedBento:
    return bentoml_servers.start(LLM_DIR, SERVICE, env={"LLM_MAX_RUNNING": "4"})


def post(
    served: ServedBento, path: str, body: bytes | dict[str, Any], content_type: str = "application/json"
) -> tuple[int, bytes, list[tuple[float, bytes]], float, float]:
    """POST and read the answer as it arrives: (status, whole body, (arrival time, bytes) reads, sent, ended)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=TIMEOUT_S)
    try:
        sent_s = time.monotonic()
        connection.request("POST", path, body=data, headers={"Content-Type": content_type})
        response = connection.getresponse()
        reads: list[tuple[float, bytes]] = []
        while chunk := response.read1(65536):
            reads.append((time.monotonic(), chunk))
        return response.status, b"".join(c for _, c in reads), reads, sent_s, time.monotonic()
    finally:
        connection.close()


def stream(served: ServedBento, path: str, **body: Any) -> tuple[list[Any], list[tuple[float, bytes]], Any]:
    status, whole, reads, sent_s, ended_s = post(served, path, {"model": MODEL, "stream": True, **body})
    assert status == 200, whole
    decoder = SseDecoder()
    chunks = [completion_chunk(event) for t_s, data in reads for event in decoder.feed(data, t_s)]
    return chunks, reads, stream_figures(sent_s, chunks, ended_s)


def metric(served: ServedBento, name: str) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=TIMEOUT_S)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    assert values, f"no {name} in /metrics"
    return sum(values)


def test_a_completion_streams_token_by_token_with_usage_last(llm: ServedBento) -> None:
    prompt = "The for statement is used to iterate"
    chunks, reads, figures = stream(
        llm,
        "/v1/completions",
        prompt=prompt,
        max_tokens=300,
        ignore_eos=True,
        stream_options={"include_usage": True},
    )
    texts = [chunk.text for chunk in chunks if chunk.text]
    assert len(texts) == 300 and all(len(text) == 1 for text in texts)  # one character per token
    assert chunks[-1].done and chunks[-2].usage is not None
    assert chunks[-3].finish_reason == "length"
    assert figures.tokens_from_usage and figures.output_tokens == 300 and figures.input_tokens == len(prompt)
    # Token by token: the 300 tokens came in many separate reads over time, not in one body at the end (a busy
    # machine may leave a few to be read together, never most of them).
    arrivals = sorted({chunk.t_s for chunk in chunks if chunk.text})
    assert len(arrivals) >= 30, f"300 tokens arrived in only {len(arrivals)} reads"
    assert figures.ttft_s is not None and 0 < figures.ttft_s < figures.e2e_s
    gaps = [gap for gap in figures.itl_s if gap > 0]
    assert len(gaps) >= 29 and figures.tpot_s is not None and figures.tpot_s > 0
    assert len(reads) >= 30


def test_chat_streams_a_role_then_content_and_counts_the_template(llm: ServedBento) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    chunks, _, figures = stream(
        llm, "/v1/chat/completions", messages=messages, max_tokens=40, stream_options={"include_usage": True}
    )
    assert chunks[0].text == "" and chunks[0].finish_reason is None  # the role-only first delta
    template = "system: Be brief.\nuser: What is a list?\nassistant: "
    assert figures.input_tokens == len(template)
    streamed = "".join(chunk.text for chunk in chunks)
    assert figures.output_tokens == len(streamed) <= 40
    finish = [chunk.finish_reason for chunk in chunks if chunk.finish_reason]
    assert finish == (["length"] if len(streamed) == 40 else ["stop"])


def test_without_usage_requested_no_usage_chunk_is_sent(llm: ServedBento) -> None:
    chunks, _, figures = stream(llm, "/v1/completions", prompt="x = ", max_tokens=5, ignore_eos=True)
    assert all(chunk.usage is None for chunk in chunks) and chunks[-1].done
    assert not figures.tokens_from_usage and figures.output_tokens == 5


def test_answers_without_streaming_and_seeds_repeat(llm: ServedBento) -> None:
    body = {"model": MODEL, "prompt": "import os\n", "max_tokens": 50, "seed": 7, "temperature": 0.8}
    answers = []
    for _ in range(2):
        status, whole, *_ = post(llm, "/v1/completions", body)
        assert status == 200, whole
        answers.append(json.loads(whole))
    first, second = answers
    text = first["choices"][0]["text"]
    assert text == second["choices"][0]["text"]
    assert first["usage"] == {"prompt_tokens": 10, "completion_tokens": len(text), "total_tokens": 10 + len(text)}
    # The same seed streamed gives the same text.
    chunks, _, _ = stream(llm, "/v1/completions", prompt="import os\n", max_tokens=50, seed=7, temperature=0.8)
    assert "".join(chunk.text for chunk in chunks) == text
    status, whole, *_ = post(
        llm, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    )
    chat = json.loads(whole)
    assert status == 200 and chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"]["completion_tokens"] == len(chat["choices"][0]["message"]["content"])


def test_models_lists_the_model(llm: ServedBento) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", llm.port, timeout=TIMEOUT_S)
    connection.request("GET", "/v1/models")
    listing = json.loads(connection.getresponse().read())
    connection.close()
    (card,) = listing["data"]
    assert card["id"] == MODEL and card["context_tokens"] == CONTEXT_TOKENS and card["parameters"] > 100_000


BAD_REQUESTS: dict[str, tuple[str, bytes | dict[str, Any], str, int, str]] = {
    # case: (path, body, content type, status, fragment of the error message)
    "prompt_missing": ("/v1/completions", {"max_tokens": 3}, "application/json", 400, "prompt"),
    "prompt_empty": ("/v1/completions", {"prompt": ""}, "application/json", 400, "prompt"),
    "max_tokens_zero": ("/v1/completions", {"prompt": "a", "max_tokens": 0}, "application/json", 400, "max_tokens"),
    "max_tokens_text": ("/v1/completions", {"prompt": "a", "max_tokens": "5"}, "application/json", 400, "max_tokens"),
    "temperature_high": ("/v1/completions", {"prompt": "a", "temperature": 3}, "application/json", 400, "temperature"),
    "top_p_zero": ("/v1/completions", {"prompt": "a", "top_p": 0}, "application/json", 400, "top_p"),
    "n_two": ("/v1/completions", {"prompt": "a", "n": 2}, "application/json", 400, "n"),
    "too_long": ("/v1/completions", {"prompt": "a" * 1000, "max_tokens": 100}, "application/json", 400, "1024"),
    "token_id_out_of_range": ("/v1/completions", {"prompt": [1, 9999]}, "application/json", 400, "token ids"),
    "unknown_model": ("/v1/completions", {"prompt": "a", "model": "gpt-9"}, "application/json", 404, "gpt-9"),
    "messages_empty": ("/v1/chat/completions", {"messages": []}, "application/json", 400, "messages"),
    "role_unknown": (
        "/v1/chat/completions",
        {"messages": [{"role": "robot", "content": "hi"}]},
        "application/json",
        400,
        "messages.0.role",
    ),
    "body_not_json": ("/v1/completions", b"{not json", "application/json", 400, "not valid JSON"),
    "body_is_array": ("/v1/completions", b"[]", "application/json", 400, "JSON object"),
    "form_encoded": ("/v1/completions", b"prompt=a", "application/x-www-form-urlencoded", 415, "not supported"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_4xx_naming_the_problem(llm: ServedBento, case: str) -> None:
    path, body, content_type, expected, fragment = BAD_REQUESTS[case]
    status, whole, *_ = post(llm, path, body, content_type)
    assert status == expected, whole
    error = json.loads(whole)["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


def test_a_bad_streaming_request_is_refused_before_any_event(llm: ServedBento) -> None:
    status, whole, *_ = post(llm, "/v1/completions", {"prompt": "a", "max_tokens": -1, "stream": True})
    assert status == 400 and not whole.startswith(b"data:")


def test_metrics_count_tokens_and_the_engine_returns_to_idle(llm: ServedBento) -> None:
    prompt_before = metric(llm, "vllm:prompt_tokens_total")
    generated_before = metric(llm, "vllm:generation_tokens_total")
    stream(llm, "/v1/completions", prompt="abcdefghij", max_tokens=20, ignore_eos=True)
    assert metric(llm, "vllm:prompt_tokens_total") - prompt_before == 10
    assert metric(llm, "vllm:generation_tokens_total") - generated_before == 20
    # A client that leaves mid-stream does not keep its slot: the engine drops it and goes idle.
    connection = http.client.HTTPConnection("127.0.0.1", llm.port, timeout=TIMEOUT_S)
    body = {"prompt": "a", "max_tokens": 1000, "ignore_eos": True, "stream": True}
    connection.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.read1(100).startswith(b"data:")
    connection.close()
    deadline_s = time.monotonic() + TIMEOUT_S
    while metric(llm, "vllm:num_requests_running") or metric(llm, "vllm:kv_cache_usage_perc"):
        assert time.monotonic() < deadline_s, "the engine kept a sequence whose client left"
        time.sleep(0.2)
    assert metric(llm, "vllm:num_requests_waiting") == 0
    # It stopped generating when the client left (the 1000 tokens take seconds; the disconnect is seen within
    # a few engine steps, which yield to the server's I/O between them).
    assert metric(llm, "vllm:generation_tokens_total") - generated_before < 20 + 900
    assert metric(llm, "vllm:time_to_first_token_seconds_count") >= 2
    count = metric(llm, "bentoml_service_request_total")
    assert count >= 2
