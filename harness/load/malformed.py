"""Bad input for the bad-input mix (`payload.malformed_fraction`): a registry of ways to spoil a valid request
body, each answering a well-behaved service should give a 4xx, never a 5xx. Pure and seeded."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.config import ResponseCheck
from harness.load.requests import PreparedBody, ReadyRequest

JSON = "application/json"
# What a well-behaved service answers to bad input.
BAD_INPUT_CHECK = ResponseCheck(status=list(range(400, 500)))
# A thousand times a typical model request: past most servers' body limits, still quick to send on loopback.
HUGE_BODY_BYTES = 2**20


@dataclass(frozen=True)
class MalformedBody:
    """A spoiled request: which kind of spoiling, the bytes sent and the Content-Type they are sent with."""

    kind: str
    body: bytes
    content_type: str = JSON


def _leaves(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every scalar in a JSON document."""
    if isinstance(document, dict):
        return [leaf for key, value in document.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(document, list):
        return [leaf for index, value in enumerate(document) for leaf in _leaves(value, (*path, index))]
    return [(path, document)]


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: _replace(document[head], rest, value)}
    copy = list(document)
    copy[head] = _replace(document[head], rest, value)
    return copy


def _lists(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """(path, list) of every non-empty list in a JSON document."""
    found: list[tuple[tuple[Any, ...], list[Any]]] = []
    if isinstance(document, list) and document:
        found.append((path, document))
    children = (
        document.items() if isinstance(document, dict) else enumerate(document) if isinstance(document, list) else ()
    )
    for key, value in children:
        found.extend(_lists(value, (*path, key)))
    return found


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def wrong_type(document: Any, rng: random.Random) -> bytes:
    """A number becomes a string (a string becomes a number, anything else an object)."""
    leaves = _leaves(document)
    path, value = leaves[rng.randrange(len(leaves))]
    spoiled: Any = "not-a-number" if isinstance(value, int | float) and not isinstance(value, bool) else {"x": 1}
    if isinstance(value, str):
        spoiled = 12345
    return _dump(_replace(document, path, spoiled))


def wrong_shape(document: Any, rng: random.Random) -> bytes:
    """A list of values (a feature vector) loses its last element or gains a nested one; a list of lists or objects
    only gains a nested one, since one row fewer can still be a valid request (a batch of one image less); a body
    without lists is wrapped in one."""
    lists = _lists(document)
    if not lists:
        return _dump([document])
    path, items = lists[rng.randrange(len(lists))]
    of_values = not any(isinstance(item, list | dict) for item in items)
    changed = items[:-1] if of_values and rng.random() < 0.5 else [*items, [items[-1]]]
    return _dump(_replace(document, path, changed))


def nan(document: Any, rng: random.Random) -> bytes:
    """A number becomes NaN or Infinity (Python's JSON extension: valid to lenient parsers, not to JSON)."""
    numbers = [leaf for leaf in _leaves(document) if isinstance(leaf[1], int | float) and not isinstance(leaf[1], bool)]
    if not numbers:
        return b"NaN"
    path, _ = numbers[rng.randrange(len(numbers))]
    return json.dumps(_replace(document, path, rng.choice([float("nan"), float("inf")]))).encode()


def empty(document: Any, rng: random.Random) -> bytes:
    """No body at all, or an empty object."""
    return rng.choice([b"", b"{}"])


def huge(document: Any, rng: random.Random) -> bytes:
    """The body's first list repeated to more than HUGE_BODY_BYTES (a whole body when it has none)."""
    lists = _lists(document)
    if not lists:
        return _dump([document] * (HUGE_BODY_BYTES // max(len(_dump(document)), 1) + 1))
    path, items = lists[0]
    # Each copy of the list's items adds their bytes without the brackets, plus one comma.
    copies = HUGE_BODY_BYTES // max(len(_dump(items)) - 1, 1) + 1
    return _dump(_replace(document, path, items * copies))


def not_json(document: Any, rng: random.Random) -> bytes:
    """A JSON body cut in the middle, or plain text."""
    text = _dump(document)
    return rng.choice([text[: max(len(text) // 2, 1)], b"this is not JSON {"])


# Each generator takes the valid body's document; "wrong_content_type" is the valid body sent as text/plain.
MALFORMED: dict[str, Callable[[Any, random.Random], bytes]] = {
    "wrong_type": wrong_type,
    "wrong_shape": wrong_shape,
    "nan": nan,
    "empty": empty,
    "huge": huge,
    "not_json": not_json,
    "wrong_content_type": lambda document, rng: _dump(document),
}
_CONTENT_TYPE = {"wrong_content_type": "text/plain"}


def malformed_body(valid: bytes, rng: random.Random, kinds: tuple[str, ...] = tuple(MALFORMED)) -> MalformedBody:
    """A spoiled version of the valid JSON body `valid`, of a kind drawn from `kinds`."""
    kind = kinds[rng.randrange(len(kinds))]
    document = json.loads(valid)
    return MalformedBody(kind, MALFORMED[kind](document, rng), _CONTENT_TYPE.get(kind, JSON))


def malformed_pool(valid: list[bytes], rng: random.Random, per_kind: int = 16) -> list[MalformedBody]:
    """Spoiled bodies made once, before the load: `per_kind` of each kind (two huge ones, which cost megabytes
    each), every kind equally likely when one is drawn from the pool at random."""
    pool = []
    for kind in MALFORMED:
        count = 2 if kind == "huge" else per_kind
        made = [malformed_body(valid[rng.randrange(len(valid))], rng, (kind,)) for _ in range(count)]
        pool.extend(made * (per_kind // count))
    return pool


def malformed_requests(requests: Sequence[ReadyRequest], rng: random.Random) -> list[ReadyRequest]:
    """The bad-input mix for requests with JSON bodies: per request and kind of spoiling, a request named
    `<name> [malformed <kind>]` with that kind's bodies and Content-Type, expecting any 4xx."""
    mix = []
    for request in requests:
        valid = [body.body for body in request.bodies if body.body is not None]
        if not valid:
            continue
        by_kind: dict[str, list[MalformedBody]] = {}
        for spoiled in malformed_pool(valid, rng):
            by_kind.setdefault(spoiled.kind, []).append(spoiled)
        for kind, spoiled_bodies in by_kind.items():
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
            headers["Content-Type"] = spoiled_bodies[0].content_type
            mix.append(
                replace(
                    request,
                    name=f"{request.name} [malformed {kind}]",
                    headers=headers,
                    bodies=[PreparedBody(spoiled.body) for spoiled in spoiled_bodies],
                    check=BAD_INPUT_CHECK,
                    counts_as_traffic=False,
                )
            )
    return mix
