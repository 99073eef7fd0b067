"""Answers alone (`check.same_as_alone`): before the load, a sample of a request's bodies is sent one at a time,
each twice, and the answers become the reference; under load an answer that disagrees with its body's reference
is a mismatch. Pure: which bodies, which answers count as the reference, and the comparison.
harness.load.reference_recording sends the bodies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.config import SameAsAlone
from harness.load.json_fields import MISSING, field_at, same_json


def body_key(body: bytes | None) -> str:
    """The key a body's reference answer is kept under (a digest: bodies can be large)."""
    return hashlib.sha256(b"" if body is None else body).hexdigest()


def sample_bodies(bodies: Sequence[bytes | None], count: int) -> list[bytes | None]:
    """The first `count` distinct bodies, in order: the ones answered alone."""
    seen: dict[str, bytes | None] = {}
    for body in bodies:
        if len(seen) == count:
            break
        seen.setdefault(body_key(body), body)
    return list(seen.values())


def answer_value(check: SameAsAlone, content: bytes | None) -> Any:
    """What is compared of an answer: its JSON field `check.field`, or the whole JSON answer (a body that is not
    JSON is compared as text); MISSING when the field is absent or the answer is not JSON."""
    try:
        document = json.loads(content or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        if check.field is not None:
            return MISSING
        return (content or b"").decode("utf-8", errors="replace")
    return document if check.field is None else field_at(document, check.field)


@dataclass(frozen=True)
class AloneAnswers:
    """One request's reference answers by body key, and the sampled bodies that have none."""

    answers: dict[str, Any] = field(default_factory=dict)
    # Answered differently the two times they were sent alone: the service is not deterministic for them.
    unstable: int = 0
    # Not answered with an expected status, or without the compared field.
    unanswered: int = 0


def reference_answers(check: SameAsAlone, pairs: Sequence[tuple[str, Any, Any]]) -> AloneAnswers:
    """The reference from (body key, first answer value, second answer value) of each body sent alone twice: a
    body whose two answers agree keeps the first; MISSING in either leaves it unanswered."""
    answers: dict[str, Any] = {}
    unstable = unanswered = 0
    for key, first, second in pairs:
        if first is MISSING or second is MISSING:
            unanswered += 1
        elif not same_json(first, second, check.tolerance):
            unstable += 1
        else:
            answers[key] = first
    return AloneAnswers(answers, unstable, unanswered)


def alone_mismatch(check: SameAsAlone, reference: Any, content: bytes | None) -> str | None:
    """Why an answer under load disagrees with its body's answer alone, or None when it agrees."""
    value = answer_value(check, content)
    if value is MISSING:
        return f"{check.field} missing" if check.field is not None else "answer not JSON"
    if same_json(value, reference, check.tolerance):
        return None
    return f"{check.field or 'answer'} differs from the answer alone"


def describe(name: str, alone: AloneAnswers) -> str:
    """One line on what the answers alone of request `name` left to compare under load."""
    sampled = len(alone.answers) + alone.unstable + alone.unanswered
    line = f"answers alone: '{name}' sends {len(alone.answers)} of {sampled} sampled bodies, each checked against it"
    if alone.unstable:
        line += f"; {alone.unstable} answered differently twice alone (left out)"
    if alone.unanswered:
        line += f"; {alone.unanswered} got no comparable answer alone (status or field; left out)"
    return line
