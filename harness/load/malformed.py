"""Bad input for the bad-input mix (`payload.malformed_fraction`): registries of ways to spoil a valid request
body as real clients do, JSON bodies in theirs, files and forms in theirs (a truncated file, a file of another
type under the right media type, a file's name sent instead of the file, an empty or missing part, a body far too
large, a multipart type without its boundary), each answering a well-behaved service should give a 4xx, never a
5xx. Pure and seeded."""

from __future__ import annotations

import io
import json
import random
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from harness.config import ResponseCheck
from harness.load.bodies import (
    FORM_CONTENT_TYPE,
    MULTIPART_CONTENT_TYPE,
    Part,
    boundary_of,
    encode_form,
    encode_multipart,
    media_type,
    split_form,
    split_multipart,
)
from harness.load.requests import PreparedBody, ReadyRequest

JSON = "application/json"
# What a well-behaved service answers to bad input.
BAD_INPUT_CHECK = ResponseCheck(status=list(range(400, 500)))
# A thousand times a typical model request: past most servers' body limits, still quick to send on loopback.
HUGE_BODY_BYTES = 2**20
# A body of files is huge at this many times the largest valid one (and at least HUGE_BODY_BYTES): far over what a
# service that takes a few megabytes of audio accepts, yet sent twice in a pool, not per request.
HUGE_TIMES_LARGEST = 4


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


# --------------------------------------------------------------------------- files and forms


@dataclass(frozen=True)
class FileBody:
    """A valid body of files or form fields as its parts: one file for a binary body, the parts of a multipart
    body, the fields of a form."""

    encoding: Literal["binary", "multipart", "form"]
    parts: tuple[Part, ...]
    content_type: str
    # The size from which a body counts as huge for this request.
    huge_bytes: int = HUGE_BODY_BYTES

    @property
    def file_indexes(self) -> list[int]:
        return [i for i, part in enumerate(self.parts) if self.encoding == "binary" or part.filename is not None]


def file_body(body: bytes, content_type: str, huge_bytes: int = HUGE_BODY_BYTES) -> FileBody:
    """A valid body sent with `content_type` (not JSON), as its parts."""
    kind = media_type(content_type)
    boundary = boundary_of(content_type) if kind == MULTIPART_CONTENT_TYPE else None
    if boundary is not None:
        return FileBody("multipart", tuple(split_multipart(body, boundary)), content_type, huge_bytes)
    if kind == FORM_CONTENT_TYPE:
        return FileBody("form", tuple(split_form(body)), content_type, huge_bytes)
    return FileBody("binary", (Part("", body, "", content_type),), content_type, huge_bytes)


def _with_part(valid: FileBody, index: int, part: Part | None, kind: str, content_type: str = "") -> MalformedBody:
    """The valid body with part `index` replaced (None: left out), encoded as the valid one was."""
    parts = [p for i, p in enumerate(valid.parts) if i != index or part is not None]
    if part is not None:
        parts[index] = part
    if valid.encoding == "binary":
        body = parts[0].content
    elif valid.encoding == "form":
        body = encode_form(parts)
    else:
        boundary = boundary_of(valid.content_type)
        assert boundary is not None
        body = encode_multipart(parts, boundary)
    return MalformedBody(kind, body, content_type or valid.content_type)


def _some_file(valid: FileBody, rng: random.Random) -> int | None:
    indexes = valid.file_indexes
    return indexes[rng.randrange(len(indexes))] if indexes else None


def truncated(valid: FileBody, rng: random.Random) -> MalformedBody | None:
    """A file cut off after 10 to 60% of its bytes, as an upload that broke off (its header usually intact)."""
    index = _some_file(valid, rng)
    if index is None or len(valid.parts[index].content) < 2:
        return None
    content = valid.parts[index].content
    cut = min(max(1, int(len(content) * rng.uniform(0.1, 0.6))), len(content) - 1)
    return _with_part(valid, index, replace(valid.parts[index], content=content[:cut]), "truncated")


def _wav_bytes() -> bytes:
    """A tenth of a second of silence as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(bytes(1600))
    return buffer.getvalue()


def wrong_file_type(valid: FileBody, rng: random.Random) -> MalformedBody | None:
    """A file of another type under the file's own name and media type: a WAV for an image, a text for anything
    else (a user who picked the wrong file)."""
    index = _some_file(valid, rng)
    if index is None:
        return None
    part = valid.parts[index]
    if media_type(part.content_type).startswith("image/"):
        other = _wav_bytes()
    else:
        other = f"This is a text file, not {media_type(part.content_type) or 'the file expected'}.\n".encode()
    return _with_part(valid, index, replace(part, content=other), "wrong_file_type")


def text_for_file(valid: FileBody, rng: random.Random) -> MalformedBody | None:
    """A file part sent as a text field holding the file's name (curl's `-F image=digit.png` for
    `-F image=@digit.png`)."""
    index = _some_file(valid, rng) if valid.encoding == "multipart" else None
    if index is None:
        return None
    part = valid.parts[index]
    return _with_part(valid, index, Part(part.name, (part.filename or "file").encode()), "text_for_file")


def empty_part(valid: FileBody, rng: random.Random) -> MalformedBody:
    """A part or field with no content at all (a binary body's only part is the body itself)."""
    index = rng.randrange(len(valid.parts))
    return _with_part(valid, index, replace(valid.parts[index], content=b""), "empty_part")


def missing_part(valid: FileBody, rng: random.Random) -> MalformedBody | None:
    """A part or field left out (a binary body has none to leave out)."""
    if valid.encoding == "binary":
        return None
    return _with_part(valid, rng.randrange(len(valid.parts)), None, "missing_part")


def huge_file(valid: FileBody, rng: random.Random) -> MalformedBody:
    """A file (else a field) padded past the request's huge size: a file far too large, whose start still looks
    right. The padding is the digit 0, which a form's encoding does not expand."""
    index = _some_file(valid, rng)
    if index is None:
        index = rng.randrange(len(valid.parts))
    part = valid.parts[index]
    padding = b"0" * (max(valid.huge_bytes - len(part.content), 0) + 1)
    return _with_part(valid, index, replace(part, content=part.content + padding), "huge")


def no_boundary(valid: FileBody, rng: random.Random) -> MalformedBody | None:
    """A multipart body whose Content-Type lacks its boundary (a client that set the header by hand)."""
    if valid.encoding != "multipart":
        return None
    return _with_part(valid, 0, valid.parts[0], "no_boundary", MULTIPART_CONTENT_TYPE)


def wrong_media_type(valid: FileBody, rng: random.Random) -> MalformedBody | None:
    """A binary body or a form sent as text/plain (a multipart body without its type is `no_boundary`)."""
    if valid.encoding == "multipart":
        return None
    return _with_part(valid, 0, valid.parts[0], "wrong_content_type", "text/plain")


# Each takes a valid body of files or fields and returns it spoiled, or None where the kind does not apply (no file
# to truncate, no part to leave out); a kind applies to a request when it applies to its first body.
FILE_MALFORMED: dict[str, Callable[[FileBody, random.Random], MalformedBody | None]] = {
    "truncated": truncated,
    "wrong_file_type": wrong_file_type,
    "text_for_file": text_for_file,
    "empty_part": empty_part,
    "missing_part": missing_part,
    "huge": huge_file,
    "no_boundary": no_boundary,
    "wrong_content_type": wrong_media_type,
}


# --------------------------------------------------------------------------- the mix


def _is_json(body: bytes, content_type: str) -> bool:
    kind = media_type(content_type)
    if kind and kind != JSON and not kind.endswith("+json"):
        return False
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def malformed_pool(
    valid: list[bytes], rng: random.Random, per_kind: int = 16, content_type: str = JSON
) -> list[MalformedBody]:
    """Spoiled bodies made once, before the load: `per_kind` of each kind that applies (two huge ones, which cost
    megabytes each), every kind equally likely when one is drawn from the pool at random. JSON bodies are spoiled
    as JSON, others (`content_type`) as files or forms."""
    if _is_json(valid[0], content_type):
        kinds: list[str] = list(MALFORMED)

        def spoil(body: bytes, kind: str) -> MalformedBody | None:
            return malformed_body(body, rng, (kind,))
    else:
        huge_bytes = max(HUGE_BODY_BYTES, HUGE_TIMES_LARGEST * max(map(len, valid)))
        first = file_body(valid[0], content_type, huge_bytes)
        kinds = [kind for kind, spoiler in FILE_MALFORMED.items() if spoiler(first, random.Random(0)) is not None]

        def spoil(body: bytes, kind: str) -> MalformedBody | None:
            return FILE_MALFORMED[kind](file_body(body, content_type, huge_bytes), rng)

    pool = []
    for kind in kinds:
        count = 2 if kind == "huge" else per_kind
        made = [spoil(valid[rng.randrange(len(valid))], kind) for _ in range(count)]
        # A body the kind does not apply to (a file too short to cut) is left out.
        kept = [body for body in made if body is not None]
        pool.extend(kept * (per_kind // count))
    return pool


def malformed_requests(requests: Sequence[ReadyRequest], rng: random.Random) -> list[ReadyRequest]:
    """The bad-input mix for requests with bodies: per request and kind of spoiling, a request named
    `<name> [malformed <kind>]` with that kind's bodies and Content-Type, expecting any 4xx."""
    mix = []
    for request in requests:
        valid = [body.body for body in request.bodies if body.body is not None]
        if not valid:
            continue
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), JSON)
        by_kind: dict[str, list[MalformedBody]] = {}
        for spoiled in malformed_pool(valid, rng, content_type=content_type):
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
