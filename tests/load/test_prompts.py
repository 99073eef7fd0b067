"""Prompts as users send them: data set rows of every form, synthetic lengths, and the streaming bodies."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import OpenAIRequest, RequestConfig, TokenLengths
from harness.errors import ConfigError
from harness.load.prompts import WORDS, PromptError, dataset_prompt, draw_length, openai_bodies, synthetic_prompts
from harness.load.requests import ready_requests


def openai(**fields: Any) -> OpenAIRequest:
    return OpenAIRequest.model_validate(fields)


@given(
    st.floats(min_value=1, max_value=2000),
    st.floats(min_value=0, max_value=500),
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=0, max_value=1000),
)
@settings(max_examples=100, deadline=None)
def test_drawn_lengths_stay_within_their_bounds(mean: float, std_dev: float, low: int, seed: int) -> None:
    lengths = TokenLengths(mean=max(mean, low), std_dev=std_dev, min=low, max=int(max(mean, low)) + 100)
    rng = random.Random(seed)
    drawn = [draw_length(lengths, rng) for _ in range(50)]
    assert all(low <= n <= int(max(mean, low)) + 100 for n in drawn)
    if std_dev == 0:
        assert set(drawn) == {round(max(mean, low))}


def test_synthetic_prompts_have_the_asked_lengths() -> None:
    config = openai(
        synthetic={"input_tokens": {"mean": 40, "std_dev": 8, "min": 10}, "output_tokens": 25, "prompts": 400}
    )
    prompts = synthetic_prompts(config, random.Random(3))
    words = [len((prompt.text or "").split()) for prompt in prompts]
    assert 38 < statistics.fmean(words) < 42 and 6 < statistics.stdev(words) < 10 and min(words) >= 10
    assert {prompt.max_tokens for prompt in prompts} == {25}
    assert all(word in WORDS for prompt in prompts for word in (prompt.text or "").split())
    ids = openai(synthetic={"input_tokens": 12, "output_tokens": 3, "token_ids": True, "vocabulary": 90, "prompts": 5})
    for prompt in synthetic_prompts(ids, random.Random(1)):
        assert len(prompt.token_ids) == 12 and all(0 <= token < 90 for token in prompt.token_ids)
    assert synthetic_prompts(config, random.Random(3)) == prompts, "the same seed draws the same prompts"


def test_rows_of_every_form() -> None:
    assert dataset_prompt({"prompt": "hello"}, 1, 16).text == "hello"
    assert dataset_prompt({"prompt": [1, 2, 3], "max_tokens": 4}, 1, 16).token_ids == (1, 2, 3)
    assert dataset_prompt({"prompt": "x", "max_tokens": 4}, 1, 16).max_tokens == 4
    chat = dataset_prompt({"messages": [{"role": "user", "content": "hi"}]}, 1, None)
    assert chat.messages == ({"role": "user", "content": "hi"},) and chat.max_tokens is None
    share = {
        "conversations": [
            {"from": "system", "value": "be brief"},
            {"from": "human", "value": "what is a token"},
            {"from": "gpt", "value": "a piece of text the model reads"},
        ]
    }
    sharegpt = dataset_prompt(share, 1, None)
    assert [m["role"] for m in sharegpt.messages] == ["system", "user"]
    assert sharegpt.max_tokens == 7, "the reply's length in words"
    assert dataset_prompt(share, 1, 50).max_tokens == 50


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("text", "line 3: expected a JSON object"),
        ({"input": "x"}, r"line 3: expected a JSON object with prompt, messages or conversations \(it has: input\)"),
        ({"prompt": ""}, "line 3: prompt: expected non-empty text"),
        ({"prompt": "x", "max_tokens": 0}, "line 3: max_tokens: expected a whole number >= 1"),
        ({"messages": [{"content": "x"}]}, r"line 3: messages\[0\]: expected a message"),
        ({"conversations": [{"from": "gpt", "value": "x"}]}, "line 3: conversations: no human turn"),
        ({"conversations": [{"from": "bot", "value": "x"}]}, r"conversations\[0\]: expected a turn"),
    ],
)
def test_rows_that_are_no_prompt_are_named(row: Any, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        dataset_prompt(row, 3, None)


def test_bodies_stream_with_usage_and_the_options_asked() -> None:
    config = openai(prompts="p.jsonl", model="tiny", ignore_eos=True, max_tokens=9, body={"temperature": 0})
    rows = [{"prompt": "a b"}, {"messages": [{"role": "user", "content": "c"}], "max_tokens": 2}]
    completions = [json.loads(body) for body in openai_bodies(config, "completions", rows, random.Random(0))]
    assert completions[0] == {
        "model": "tiny",
        "prompt": "a b",
        "max_tokens": 9,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
    }
    assert completions[1]["prompt"] == "c" and completions[1]["max_tokens"] == 2
    chat = [json.loads(body) for body in openai_bodies(config, "chat", rows, random.Random(0))]
    assert chat[0]["messages"] == [{"role": "user", "content": "a b"}] and "prompt" not in chat[0]
    quiet = openai(prompts="p.jsonl", include_usage=False)
    assert "stream_options" not in json.loads(openai_bodies(quiet, "chat", rows, random.Random(0))[0])
    with pytest.raises(PromptError, match="chat API takes text"):
        openai_bodies(config, "chat", [{"prompt": [1, 2]}], random.Random(0))


def test_a_request_with_openai_is_ready_to_stream(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "def "}\n{"prompt": "class "}\n')
    config = RequestConfig(name="complete", path="/v1/completions", openai={"prompts": str(prompts), "max_tokens": 8})
    (ready,) = ready_requests([config], {})
    assert ready.stream == "openai" and len(ready.bodies) == 2
    assert ready.headers == {"Content-Type": "application/json", "Accept": "text/event-stream"}
    chat = RequestConfig(name="chat", path="/v1/chat/completions", openai={"prompts": str(prompts)})
    assert json.loads(ready_requests([chat], {})[0].bodies[0].body or b"")["messages"][0]["content"] == "def "
    prompts.write_text('{"prompt": "x"}\n{"text": "y"}\n')
    with pytest.raises(ConfigError, match=r"requests\[0\].openai.prompts '.*prompts.jsonl' line 2: expected a JSON"):
        ready_requests([config], {})
    synthetic = RequestConfig(
        name="s", path="/v1/completions", openai={"synthetic": {"input_tokens": 5, "output_tokens": 2, "prompts": 3}}
    )
    first, second = ready_requests([synthetic], {}, seed=1), ready_requests([synthetic], {}, seed=2)
    assert len(first[0].bodies) == 3 and first[0].bodies != second[0].bodies
