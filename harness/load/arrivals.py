"""Open-model arrival schedules: intended send times at a stage's rate, constant, Poisson, gamma with a burstiness
factor (vLLM's benchmark_serving), or a recorded trace of timestamps replayed at the stage's rate (as
inference-perf replays one). Pure: the random generator is passed in, a trace arrives as text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import math
import random
from collections.abc import Iterator, Sequence
from typing import get_args

from harness.config import ArrivalKind

ARRIVAL_KINDS: tuple[ArrivalKind, ...] = get_args(ArrivalKind)


def arrival_offsets(
    rate_rps: float,
    duration_s: float,
    kind: ArrivalKind,
    rng: random.Random,
    *,
    burstiness: float = 1.0,
    trace_s: Sequence[float] = (),
) -> Iterator[float]:
    """Intended send times (seconds from the stage start) of the arrivals in [0, duration_s), `rate_rps` on average.

    Latency in open-model stages is measured from these times, not from the actual send, so a service that falls
    behind shows its queueing instead of hiding it (coordinated omission). `gamma` draws the gaps from a gamma
    distribution of shape `burstiness` and mean 1 / rate: 1 is Poisson, below 1 burstier, above 1 more regular.
    `trace` replays the gaps of `trace_s` (`trace_gaps`) scaled to `rate_rps`, from its start again when it ends.
    """
    if rate_rps <= 0 or duration_s <= 0:
        return
    if kind == "constant":
        interval = 1.0 / rate_rps
        index = 0
        while (t := index * interval) < duration_s:
            yield t
            index += 1
        return
    if kind == "trace":
        yield from _replayed(trace_gaps(trace_s), rate_rps, duration_s)
        return
    if kind == "gamma" and not (burstiness > 0 and math.isfinite(burstiness)):
        raise ValueError(f"burstiness={burstiness!r} must be a finite number > 0")
    t = 0.0
    while True:
        t += (
            rng.expovariate(rate_rps)
            if kind == "poisson"
            else rng.gammavariate(burstiness, 1.0 / (rate_rps * burstiness))
        )
        if t >= duration_s:
            return
        yield t


def process_arrival_offsets(
    rate_rps: float,
    duration_s: float,
    kind: ArrivalKind,
    rng: random.Random,
    *,
    process: int,
    processes: int,
    burstiness: float = 1.0,
    trace_s: Sequence[float] = (),
) -> Iterator[float]:
    """One of `processes` load generators' share of a stage's arrivals at `rate_rps` in all: a random schedule of its
    own at 1 / processes of the rate (independent Poisson processes add up to one), or every processes-th arrival of
    the one trace schedule, so that together they replay the trace's pattern rather than each a slowed copy of it."""
    if not 0 <= process < processes:
        raise ValueError(f"process={process} must be within [0, processes={processes})")
    if kind != "trace":
        yield from arrival_offsets(rate_rps / processes, duration_s, kind, rng, burstiness=burstiness)
        return
    for index, offset_s in enumerate(arrival_offsets(rate_rps, duration_s, kind, rng, trace_s=trace_s)):
        if index % processes == process:
            yield offset_s


def trace_gaps(trace_s: Sequence[float]) -> tuple[float, ...]:
    """The gaps of a trace's timestamps in units of its mean gap (so they average 1), the last one the gap from its
    end to its start again; ValueError for fewer than two arrivals, timestamps out of order or all equal."""
    if len(trace_s) < 2:
        raise ValueError(f"a trace needs at least 2 timestamps, got {len(trace_s)}")
    if any(b < a for a, b in itertools.pairwise(trace_s)):
        raise ValueError("trace timestamps must be in ascending order")
    span_s = trace_s[-1] - trace_s[0]
    if not span_s > 0:
        raise ValueError("trace timestamps are all equal: a trace needs a duration")
    mean_gap_s = span_s / (len(trace_s) - 1)
    gaps = [(b - a) / mean_gap_s for a, b in itertools.pairwise(trace_s)]
    # The replay wraps around with one mean gap: a trace of n arrivals lasts n mean gaps, its rate exactly.
    return (*gaps, 1.0)


def _replayed(gaps: Sequence[float], rate_rps: float, duration_s: float) -> Iterator[float]:
    # Each pass's times from its own start (a pass lasts len(gaps) mean gaps), so rounding does not drift.
    within = list(itertools.accumulate(gaps[:-1], initial=0.0))
    for first in itertools.count(step=len(gaps)):
        for offset in within:
            t_s = (first + offset) / rate_rps
            if t_s >= duration_s:
                return
            yield t_s


def trace_rate_rps(trace_s: Sequence[float]) -> float:
    """The mean arrival rate of a trace as recorded (arrivals over its span): the stage rate that replays it as is."""
    trace_gaps(trace_s)  # the same checks
    return (len(trace_s) - 1) / (trace_s[-1] - trace_s[0])


def parse_trace(text: str) -> tuple[float, ...]:
    """The arrival timestamps (seconds) of a trace file, sorted: one number per line, JSON lines with a `timestamp`
    number, or CSV whose header names a `timestamp` column of numbers or ISO dates (Azure's LLM inference traces,
    which inference-perf replays). ValueError names the line that cannot be read."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty (expected one timestamp per line)")
    first = lines[0].strip()
    if first.startswith("{"):
        return tuple(sorted(_json_timestamp(line, number) for number, line in enumerate(lines, start=1)))
    try:
        float(first.split(",")[0])
    except ValueError:
        return _csv_timestamps(text)
    return tuple(sorted(_number(line.split(",")[0], number) for number, line in enumerate(lines, start=1)))


def _number(raw: str, line: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"line {line}: {raw.strip()[:40]!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError(f"line {line}: {raw.strip()!r} is not a finite number of seconds")
    return value


def _json_timestamp(line: str, number: int) -> float:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"line {number}: not valid JSON ({error.msg})") from None
    value = row.get("timestamp") if isinstance(row, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"line {number}: expected an object with a number `timestamp` (seconds)")
    return _number(str(value), number)


def _csv_timestamps(text: str) -> tuple[float, ...]:
    reader = csv.reader(io.StringIO(text))
    header = [name.strip().lower() for name in next(reader)]
    if "timestamp" not in header:
        raise ValueError(f"line 1: a CSV trace needs a `timestamp` column (its columns: {', '.join(header)})")
    column = header.index("timestamp")
    values = []
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        raw = row[column].strip() if column < len(row) else ""
        try:
            values.append(float(raw))
        except ValueError:
            try:
                values.append(dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC).timestamp())
            except ValueError:
                raise ValueError(f"line {number}: {raw[:40]!r} is neither seconds nor an ISO date") from None
    return tuple(sorted(values))
