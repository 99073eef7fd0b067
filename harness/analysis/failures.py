"""Failed requests explained: a short sample of what each kind of error got back (the service's validation
message, a refused connection), kept by the load generator, merged per stage, described by the verdict, the
reports and the diagnosis.

Bounded and cheap: the load generator keeps at most SAMPLES_PER_KIND samples of each kind per interval, reads at
most SAMPLE_BYTES of an answer, and only while the kind still has room; a stage keeps at most SAMPLES_PER_KIND
distinct ones. Samples are redacted like everything else the harness writes (the request's header values, which
carry its credentials). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence

from harness.redact import redact_text

SAMPLES_PER_KIND = 2
# Bytes of an answer read for its sample, and characters kept: a validation message fits, a page does not.
SAMPLE_BYTES = 1024
SAMPLE_CHARS = 240
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _short(text: str) -> str:
    one_line = " ".join(_CONTROL.sub(" ", text).split())
    return one_line if len(one_line) <= SAMPLE_CHARS else one_line[: SAMPLE_CHARS - 3] + "..."


def _secrets(header_values: Iterable[str]) -> list[str]:
    # A service may echo the whole header value or only its token (`Bearer <token>`): both are redacted.
    return [part for value in header_values for part in (value, *value.split())]


def answer_sample(
    status: int, body: bytes | str | None, error: BaseException | None, header_values: Iterable[str]
) -> str:
    """One line saying what a failed request got: the start of the answer's body for an HTTP status (or that it
    was empty), else the error the client raised (a timeout, a refused or reset connection)."""
    if status:
        raw = body or b""
        text = raw[:SAMPLE_BYTES] if isinstance(raw, str) else raw[:SAMPLE_BYTES].decode("utf-8", errors="replace")
        shown = _short(text) or "(empty body)"
    elif error is not None:
        shown = _short(f"{type(error).__name__}: {error}")
    else:
        shown = "(no answer)"
    return redact_text(shown, _secrets(header_values))


def keep_sample(samples: MutableMapping[str, list[str]], kind: str, make: Callable[[], str]) -> None:
    """Add a sample of `kind` made by `make` unless the kind already has SAMPLES_PER_KIND (then `make` is not
    called: the answer is not even read)."""
    kept = samples.setdefault(kind, [])
    if len(kept) < SAMPLES_PER_KIND:
        sample = make()
        if sample not in kept:
            kept.append(sample)


def merge_samples(per_interval: Sequence[Mapping[str, Sequence[str]]]) -> dict[str, list[str]]:
    """The first SAMPLES_PER_KIND distinct samples of each kind over many intervals, in their order."""
    merged: dict[str, list[str]] = {}
    for samples in per_interval:
        for kind, texts in samples.items():
            kept = merged.setdefault(kind, [])
            kept.extend(text for text in texts if text not in kept and len(kept) < SAMPLES_PER_KIND)
    return dict(sorted(merged.items()))


def describe_errors(errors: Mapping[str, int], samples: Mapping[str, Sequence[str]], requests: int) -> str:
    """Errors by kind, most frequent first, each with its count and its first sample:
    `203 of 203 requests failed: http_400 x203 (answered: '{"error": ...}')`."""
    failed = sum(errors.values())
    kinds = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    parts = []
    for kind, count in kinds:
        sample = next(iter(samples.get(kind, ())), None)
        parts.append(f"{kind} x{count}" + (f" ({_said(kind)}: '{sample}')" if sample else ""))
    return f"{failed} of {requests} requests failed: " + "; ".join(parts)


def _said(kind: str) -> str:
    return "answered" if kind.startswith("http_") else "error"
