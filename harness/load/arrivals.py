"""Open-model arrival schedules: intended send times for a fixed request rate, constant or Poisson."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal


def arrival_offsets(
    rate_rps: float, duration_s: float, kind: Literal["constant", "poisson"], rng: random.Random
) -> Iterator[float]:
    """Intended send times (seconds from the stage start) of the arrivals in [0, duration_s).

    Latency in open-model stages is measured from these times, not from the actual send, so a
    service that falls behind shows its queueing instead of hiding it (coordinated omission).
    """
    if rate_rps <= 0:
        return
    t = 0.0
    if kind == "constant":
        interval = 1.0 / rate_rps
        index = 0
        while (t := index * interval) < duration_s:
            yield t
            index += 1
        return
    while True:
        t += rng.expovariate(rate_rps)
        if t >= duration_s:
            return
        yield t
