"""Prompts as users send them to an OpenAI-compatible server (`requests[].openai`): rows of a data set of prompts or
conversations (plain prompts, OpenAI chat messages, ShareGPT conversations), or synthetic prompts of given input and
output token lengths, made into `/v1/completions` or `/v1/chat/completions` bodies that stream. Pure: rows and a
seeded generator in, encoded bodies out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.config import OpenAIRequest, TokenLengths

Api = Literal["completions", "chat"]

# Common English words that GPT-2's, Llama's and most BPE tokenizers of English encode as one token each (with their
# leading space): a synthetic text prompt of n words is about n tokens. The server's usage reports the exact count.
WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is that for it as was with be by on not he this are or his from at which but have an they
    you were her she there been one all we their has would when if so no will more can out who up them some into
    time only other new any then about these two may first could my like over such our even most made after also
    did many before must well back through years much where your way down should because long each just state
    people those too how little good world very make still own see men work life here between both under never
    day same another know while last might great old year off come since against go came right used take three
    states himself few house use during without again place around however home small found thought went say
    part once general high upon school every does got united left number course war until always away something
    fact though water less public put think almost hand enough far took head yet government system better set
    told nothing night end why called city find going look asked later knew point next program give group toward
    young let room side social given present order national second possible rather per face among form important
    often things looked early white case become large big need four within felt along children saw best church
    ever least power development light thing seemed family interest want members mind country area others done
    turned although open problem
    """.split()  # noqa: SIM905 - a list of 300 words, one a line, would be longer than the module
)
# ShareGPT's speaker names, as OpenAI chat roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class PromptError(ValueError):
    """A data set row that is no prompt; the message names the row's line and what was expected."""


@dataclass(frozen=True)
class Prompt:
    """One prompt: chat messages, text or token ids, and the output tokens it asks for (None: the server's default)."""

    messages: tuple[Mapping[str, Any], ...] = ()
    text: str | None = None
    token_ids: tuple[int, ...] = ()
    max_tokens: int | None = None


def draw_length(lengths: TokenLengths, rng: random.Random) -> int:
    """A token count from a distribution: the normal's draw rounded and cut to [min, max]."""
    value = lengths.mean if lengths.std_dev == 0 else rng.gauss(lengths.mean, lengths.std_dev)
    count = max(lengths.min, round(value))
    return count if lengths.max is None else min(lengths.max, count)


def synthetic_prompts(config: OpenAIRequest, rng: random.Random) -> list[Prompt]:
    """`config.synthetic.prompts` prompts of drawn input lengths (words or token ids), each asking for a drawn
    output length."""
    synthetic = config.synthetic
    if synthetic is None:
        raise ValueError("synthetic_prompts needs openai.synthetic")
    prompts = []
    for _ in range(synthetic.prompts):
        length = draw_length(synthetic.input_tokens, rng)
        output = draw_length(synthetic.output_tokens, rng)
        if synthetic.token_ids:
            ids = tuple(rng.randrange(synthetic.vocabulary) for _ in range(length))
            prompts.append(Prompt(token_ids=ids, max_tokens=output))
        else:
            prompts.append(Prompt(text=" ".join(rng.choice(WORDS) for _ in range(length)), max_tokens=output))
    return prompts


def _positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PromptError(f"{where}: expected a whole number >= 1, got {value!r}")
    return value


def _messages(raw: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(raw, list) or not raw:
        raise PromptError(f"{where}: expected a non-empty list of messages")
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise PromptError(f"{where}[{index}]: expected a message {{role, content}}")
    return tuple(raw)


def _conversation(raw: Any, where: str) -> tuple[tuple[Mapping[str, Any], ...], str | None]:
    """A ShareGPT conversation as chat messages up to its last user turn, and the reply that followed it."""
    if not isinstance(raw, list) or not raw:
        raise PromptError(f"{where}: expected a non-empty list of turns")
    messages: list[Mapping[str, Any]] = []
    for index, turn in enumerate(raw):
        role = SHAREGPT_ROLES.get(turn.get("from", "")) if isinstance(turn, dict) else None
        if role is None or not isinstance(turn.get("value"), str):
            raise PromptError(f"{where}[{index}]: expected a turn {{from: human|gpt|system, value: text}}")
        messages.append({"role": role, "content": turn["value"]})
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise PromptError(f"{where}: no human turn to send")
    reply = messages[last_user + 1]["content"] if last_user + 1 < len(messages) else None
    return tuple(messages[: last_user + 1]), reply


def dataset_prompt(row: Any, line: int, max_tokens: int | None) -> Prompt:
    """One data set row as a prompt: {"prompt": text or token ids}, {"messages": [...]} or {"conversations": [...]}
    (ShareGPT, up to its last human turn); its max_tokens, else `max_tokens`, else a ShareGPT reply's length in
    words."""
    where = f"line {line}"
    if not isinstance(row, dict):
        raise PromptError(f"{where}: expected a JSON object with prompt, messages or conversations")
    asked = _positive_int(row.get("max_tokens"), f"{where}: max_tokens") or max_tokens
    if "prompt" in row:
        prompt = row["prompt"]
        if isinstance(prompt, str) and prompt:
            return Prompt(text=prompt, max_tokens=asked)
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return Prompt(token_ids=tuple(prompt), max_tokens=asked)
        raise PromptError(f"{where}: prompt: expected non-empty text or a list of token ids")
    if "messages" in row:
        return Prompt(messages=_messages(row["messages"], f"{where}: messages"), max_tokens=asked)
    if "conversations" in row:
        messages, reply = _conversation(row["conversations"], f"{where}: conversations")
        if asked is None and reply:
            asked = len(reply.split()) or None
        return Prompt(messages=messages, max_tokens=asked)
    raise PromptError(
        f"{where}: expected a JSON object with prompt, messages or conversations (it has: {', '.join(row)})"
    )


def _completion_prompt(prompt: Prompt) -> str | list[int]:
    if prompt.token_ids:
        return list(prompt.token_ids)
    if prompt.text is not None:
        return prompt.text
    # Chat rows sent to the completions API: the last user turn is the prompt (as vLLM's ShareGPT benchmark does).
    return str(next(m["content"] for m in reversed(prompt.messages) if m["role"] == "user"))


def _chat_messages(prompt: Prompt) -> list[Mapping[str, Any]]:
    if prompt.messages:
        return list(prompt.messages)
    if prompt.token_ids:
        raise PromptError("the chat API takes text: a prompt of token ids goes to the completions API")
    return [{"role": "user", "content": prompt.text}]


def openai_body(prompt: Prompt, api: Api, config: OpenAIRequest) -> dict[str, Any]:
    """The streaming request body of one prompt."""
    body: dict[str, Any] = {} if config.model is None else {"model": config.model}
    if api == "chat":
        body["messages"] = _chat_messages(prompt)
    else:
        body["prompt"] = _completion_prompt(prompt)
    if prompt.max_tokens is not None:
        body["max_tokens"] = prompt.max_tokens
    if config.ignore_eos:
        body["ignore_eos"] = True
    body["stream"] = True
    if config.include_usage:
        body["stream_options"] = {"include_usage": True}
    return {**body, **config.body}


def openai_bodies(config: OpenAIRequest, api: Api, rows: Sequence[Any] | None, rng: random.Random) -> list[bytes]:
    """The encoded bodies of a request's prompts: each data set row, or the synthetic prompts drawn with `rng`."""
    prompts = (
        synthetic_prompts(config, rng)
        if rows is None
        else [dataset_prompt(row, line, config.max_tokens) for line, row in enumerate(rows, start=1)]
    )
    return [json.dumps(openai_body(prompt, api, config), separators=(",", ":")).encode() for prompt in prompts]
