"""Sends the sampled bodies of every request with `check.same_as_alone` to one replica, one request at a time and
each twice, before the load: their answers become the reference that answers under load are compared with
(harness.load.reference_answers decides what counts)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from harness.config import SameAsAlone
from harness.errors import LoadError
from harness.load.json_fields import MISSING
from harness.load.reference_answers import AloneAnswers, answer_value, body_key, reference_answers, sample_bodies
from harness.load.requests import ReadyRequest, status_expected


def _send(
    request: ReadyRequest, url: str, body: bytes | None, timeout_s: float, context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    sent = urllib.request.Request(url, data=body, headers=request.headers, method=request.method)
    try:
        with urllib.request.urlopen(sent, timeout=timeout_s, context=context) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise LoadError(
            f"answers alone: request '{request.name}' to {url} got no answer ({reason})",
            hint="check that the service answers; same_as_alone sends its bodies before the load",
        ) from error


def _value(request: ReadyRequest, check: SameAsAlone, status: int, content: bytes) -> Any:
    return answer_value(check, content) if status_expected(request.check, status) else MISSING


def record_reference_answers(
    requests: Sequence[ReadyRequest], base_url: str, timeout_s: float, context: ssl.SSLContext | None = None
) -> dict[str, AloneAnswers]:
    """The answers alone of each request with `check.same_as_alone`, by request name; a LoadError when a request
    gets no answer, or none of its bodies a stable one."""
    recorded = {}
    for request in requests:
        check = request.check.same_as_alone
        if check is None:
            continue
        url = base_url.rstrip("/") + request.path
        pairs = []
        for body in sample_bodies([prepared.body for prepared in request.bodies], check.bodies):
            first, second = (_value(request, check, *_send(request, url, body, timeout_s, context)) for _ in range(2))
            pairs.append((body_key(body), first, second))
        alone = reference_answers(check, pairs)
        if not alone.answers:
            raise LoadError(
                f"answers alone: no body of request '{request.name}' got the same comparable answer twice when sent "
                f"alone ({alone.unstable} differed, {alone.unanswered} had a wrong status or no "
                f"{check.field or 'JSON answer'})",
                hint="check the request's path, body and check.same_as_alone.field",
            )
        recorded[request.name] = alone
    return recorded
