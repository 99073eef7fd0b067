"""Requests as users define them (`requests:` in a scenario): bodies from a JSON-lines file, a template filled
from a data set, or files and form fields (harness.load.bodies), a weighted choice between requests, headers read
from the environment, and the checks that judge each answer. Everything but the file readers is pure; the Locust
file calls it.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.config import FieldCheck, RequestConfig, ResponseCheck, StreamFormat, env_references
from harness.errors import ConfigError
from harness.load.bodies import (
    JSON_CONTENT_TYPE,
    file_bodies,
    fill_template,
    missing_column,
    read_jsonl,
    request_rows,
)
from harness.load.json_fields import MISSING, field_at, same_json
from harness.load.prompts import PromptError, openai_bodies
from harness.load.reference_answers import alone_mismatch, body_key


@dataclass(frozen=True)
class PreparedBody:
    """One request body, the data set row it was filled from (where expected answers come from), and the answer
    it got alone before the load (`check.same_as_alone`; MISSING when it has none)."""

    body: bytes | None
    row: Mapping[str, Any] | None = None
    alone_answer: Any = MISSING


@dataclass(frozen=True)
class ReadyRequest:
    """A request kind ready to send: headers expanded, bodies prepared."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    bodies: list[PreparedBody]
    check: ResponseCheck = field(default_factory=ResponseCheck)
    # False for the bad-input mix: judged by bad_input_5xx_rate only, kept out of error_rate and latency.
    counts_as_traffic: bool = True
    # How the answer is read as it arrives (harness.load.streaming); None: whole.
    stream: StreamFormat | None = None


@dataclass(frozen=True)
class CheckResult:
    """How one answer compares with what was expected: a wrong status is a failed request; a right status
    with a wrong body is a mismatch; `checked` says whether the body was compared at all."""

    status_ok: bool
    checked: bool = False
    mismatch: str | None = None


# --------------------------------------------------------------------------- bodies


def _encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def prepare_bodies(request: RequestConfig, where: str, seed: int = 0) -> tuple[list[PreparedBody], str | None]:
    """The bodies a request sends and their Content-Type (None: JSON, or no body): each line of its body_file,
    its template filled from each data set row, its files and fields (harness.load.bodies), or its OpenAI
    generation requests (`openai`: each prompt of its data set, or synthetic prompts drawn from `seed`)."""
    if request.openai is not None:
        return _openai_bodies(request, where, seed), None
    if request.body_file is not None:
        return [PreparedBody(_encode(body)) for body in read_jsonl(request.body_file, f"{where}.body_file")], None
    rows = request_rows(request, where)
    if request.sends_files:
        content_type, encoded = file_bodies(request, rows, where)
        if rows is None:
            return [PreparedBody(body) for body in encoded], content_type
        return [PreparedBody(body, row) for body, row in zip(encoded, rows, strict=True)], content_type
    if rows is None:
        # A template without placeholders is the one body every request sends.
        return [PreparedBody(None if request.body_template is None else _encode(request.body_template))], None
    prepared = []
    for number, row in enumerate(rows, start=1):
        if request.body_template is None:
            prepared.append(PreparedBody(None, row))
            continue
        try:
            prepared.append(PreparedBody(_encode(fill_template(request.body_template, row)), row))
        except KeyError as error:
            raise missing_column(error, "body_template", request, where, row, number) from None
    return prepared, None


def _openai_bodies(request: RequestConfig, where: str, seed: int) -> list[PreparedBody]:
    config, api = request.openai, request.openai_api
    assert config is not None and api is not None  # the schema requires them together
    rows = None if config.prompts is None else read_jsonl(config.prompts, f"{where}.openai.prompts")
    try:
        bodies = openai_bodies(config, api, rows, random.Random(seed))
    except PromptError as error:
        raise ConfigError(f"{where}.openai.prompts '{config.prompts}' {error}") from None
    return [PreparedBody(body) for body in bodies]


# --------------------------------------------------------------------------- headers and choice


def expand_headers(headers: Mapping[str, str], environ: Mapping[str, str], where: str) -> dict[str, str]:
    """Header values with `${NAME}` read from the environment; a variable that is not set is a ConfigError
    naming it (never its value)."""
    expanded = {}
    for header, value in headers.items():
        for name in env_references(value):
            if name not in environ:
                raise ConfigError(
                    f"{where}.headers.{header}: environment variable {name} is not set",
                    hint=f"export {name}=... before running the harness",
                )
        expanded[header] = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda match: environ[match.group(1)], value)
    return expanded


def cumulative_weights(weights: Sequence[float]) -> list[float]:
    """Running sums of positive weights, for `pick_weighted`."""
    if not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
        raise ValueError(f"weights must be positive and finite, got {list(weights)}")
    total = 0.0
    sums = []
    for weight in weights:
        total += weight
        sums.append(total)
    return sums


def pick_weighted(cumulative: Sequence[float], rng: random.Random) -> int:
    """An index drawn with probability proportional to its weight."""
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def choose_send(
    requests: Sequence[ReadyRequest],
    cumulative: Sequence[float],
    malformed: Sequence[ReadyRequest],
    malformed_fraction: float,
    rng: random.Random,
) -> tuple[ReadyRequest, PreparedBody]:
    """What one send sends: at `malformed_fraction` of the sends one of the bad-input mix, otherwise a request drawn
    by its weight (`cumulative`, of `requests`); then one of its bodies. All drawn from `rng`, so a seed repeats the
    sequence."""
    if malformed and rng.random() < malformed_fraction:
        request = malformed[rng.randrange(len(malformed))]
    else:
        request = requests[pick_weighted(cumulative, rng)] if len(requests) > 1 else requests[0]
    return request, request.bodies[rng.randrange(len(request.bodies))]


def ready_requests(configs: Sequence[RequestConfig], environ: Mapping[str, str], seed: int = 0) -> list[ReadyRequest]:
    """The scenario's requests with headers expanded and bodies prepared (ConfigError names the field); synthetic
    prompts are drawn from `seed`."""
    ready = []
    for index, config in enumerate(configs):
        where = f"requests[{index}]"
        headers = expand_headers(config.headers, environ, where)
        bodies, content_type = prepare_bodies(config, where, seed)
        if bodies[0].body is not None and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = content_type or JSON_CONTENT_TYPE
        if config.stream_format in ("sse", "openai") and not any(h.lower() == "accept" for h in headers):
            headers["Accept"] = "text/event-stream"
        ready.append(
            ReadyRequest(
                config.name,
                config.method,
                config.path,
                headers,
                bodies,
                config.check,
                stream=config.stream_format,
            )
        )
    return ready


def endpoint_request(path: str, bodies: Sequence[bytes]) -> ReadyRequest:
    """The single-endpoint scenario (payload + service.endpoint) as a request: JSON POSTs, any 2xx is right."""
    return ReadyRequest(
        path, "POST", path, {"Content-Type": JSON_CONTENT_TYPE}, [PreparedBody(body) for body in bodies]
    )


# --------------------------------------------------------------------------- checks


def _field_mismatch(check: FieldCheck, answer: Any, row: Mapping[str, Any] | None) -> str | None:
    value = field_at(answer, check.field)
    if value is MISSING:
        return f"{check.field} missing"
    if check.expected_column is not None:
        expected = None if row is None else row.get(check.expected_column)
        return None if same_json(value, expected) else f"{check.field} != {check.expected_column}"
    if check.among is not None:
        return None if any(same_json(value, option) for option in check.among) else f"{check.field} not among"
    return None if same_json(value, check.equals) else f"{check.field} != expected"


def status_expected(check: ResponseCheck, status: int) -> bool:
    """Whether an answer's status is one the check expects (default: any 2xx)."""
    return 200 <= status < 300 if check.status is None else status in check.status


def check_answer(
    check: ResponseCheck,
    status: int,
    body: bytes | None,
    row: Mapping[str, Any] | None,
    alone_answer: Any = MISSING,
) -> CheckResult:
    """Judge one answer: its status, then (right status) its JSON fields and its agreement with the answer the
    same request body got alone (`alone_answer`, when one was recorded)."""
    if not status_expected(check, status):
        return CheckResult(status_ok=False)
    compare_alone = check.same_as_alone if alone_answer is not MISSING else None
    if not check.fields and compare_alone is None:
        return CheckResult(status_ok=True)
    if check.fields:
        try:
            answer = json.loads(body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return CheckResult(status_ok=True, checked=True, mismatch="answer not JSON")
        for field_check in check.fields:
            mismatch = _field_mismatch(field_check, answer, row)
            if mismatch is not None:
                return CheckResult(status_ok=True, checked=True, mismatch=mismatch)
    if compare_alone is not None:
        return CheckResult(status_ok=True, checked=True, mismatch=alone_mismatch(compare_alone, alone_answer, body))
    return CheckResult(status_ok=True, checked=True)


def with_alone_answers(request: ReadyRequest, answers: Mapping[str, Any]) -> ReadyRequest:
    """The request sending only the bodies with an answer alone (by `body_key`), each carrying it: under load
    every answer is compared. Unchanged when it has no answers alone."""
    if not answers:
        return request
    bodies = [replace(body, alone_answer=answers.get(body_key(body.body), MISSING)) for body in request.bodies]
    return replace(request, bodies=[body for body in bodies if body.alone_answer is not MISSING])
