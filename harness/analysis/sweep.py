"""The search behind `harness sweep`: the maximum arrival rate the service sustains under its objectives.

A pure state machine: the caller runs each probe (a stage at a fixed arrival rate, judged against the
objectives) and asks `next_rate(probes, ...)` for the next rate until it answers None.

1. Bracket: probe `initial_rps`; while probes pass, double the rate (capped at `max_rps`) until one
   fails or `max_rps` itself passes. If the first probe fails, halve instead until one passes or the
   rate falls below `min_rps` (default initial_rps / 32).
2. Bisect: with a passing `low` and a failing `high`, probe their geometric mean sqrt(low * high) until
   (high - low) / low <= tolerance. The geometric mean halves log(high / low), which is what a
   relative tolerance measures, so from [r, 2r] to 5% takes 4 probes.

Inconclusive probes (passed=None: the stage was invalid or an objective was INCONCLUSIVE/WARN) are
retried once at the same rate; a second inconclusive probe at that rate counts as failed, because a
rate whose result cannot be trusted twice in a row is not a rate the service is proven to sustain.
An inconclusive probe followed by a probe at a different rate also counts as failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.analysis.distributions import gamma_upper_quantile
from harness.analysis.latency import min_samples_for_percentile
from harness.model import Probe, SweepResult

# Below this fraction of initial_rps the downward search gives up (a default for min_rps).
DOWNWARD_LIMIT_FRACTION = 1.0 / 32.0


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def _outcomes(probes: Sequence[Probe]) -> tuple[list[tuple[float, bool]], float | None]:
    """Decided (rate, passed) pairs, and the rate owed a retry if the last probe is a first inconclusive."""
    decided: list[tuple[float, bool]] = []
    pending: float | None = None
    for probe in probes:
        if not (math.isfinite(probe.rate_rps) and probe.rate_rps > 0):
            raise ValueError(f"probe rate_rps={probe.rate_rps!r} must be a finite number > 0")
        if pending is not None:
            if not _same(probe.rate_rps, pending):
                decided.append((pending, False))
            elif probe.passed is None:
                decided.append((pending, False))
                pending = None
                continue
            pending = None
        if probe.passed is None:
            pending = probe.rate_rps
        else:
            decided.append((probe.rate_rps, probe.passed))
    return decided, pending


def _bracket(decided: Sequence[tuple[float, bool]]) -> tuple[float | None, float | None, int]:
    """(highest pass below the lowest failure, lowest failure, passes ignored for lying above a failure)."""
    high = min((rate for rate, passed in decided if not passed), default=None)
    passes = [rate for rate, passed in decided if passed]
    below = [rate for rate in passes if high is None or rate < high]
    return max(below, default=None), high, len(passes) - len(below)


def _check(initial_rps: float, max_rps: float, tolerance: float, min_rps: float) -> None:
    if not (math.isfinite(initial_rps) and initial_rps > 0):
        raise ValueError(f"initial_rps={initial_rps!r} must be a finite number > 0")
    if not (math.isfinite(max_rps) and max_rps >= initial_rps):
        raise ValueError(f"max_rps={max_rps!r} must be a finite number >= initial_rps={initial_rps:g}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance={tolerance!r} must be a finite number > 0")
    if not (math.isfinite(min_rps) and 0 < min_rps <= initial_rps):
        raise ValueError(f"min_rps={min_rps!r} must be within (0, initial_rps={initial_rps:g}]")


def next_rate(
    probes: Sequence[Probe],
    *,
    initial_rps: float,
    max_rps: float,
    tolerance: float = 0.05,
    min_rps: float | None = None,
) -> float | None:
    """The arrival rate to probe next, or None when the search is finished (see the module docstring)."""
    floor_rps = initial_rps * DOWNWARD_LIMIT_FRACTION if min_rps is None else min_rps
    _check(initial_rps, max_rps, tolerance, floor_rps)
    decided, pending = _outcomes(probes)
    if pending is not None:
        return pending
    if not decided:
        return initial_rps
    low, high, _ = _bracket(decided)
    if high is None:
        assert low is not None  # something was decided and nothing failed
        return None if low >= max_rps else min(2.0 * low, max_rps)
    if low is None:
        rate = high / 2.0
        return None if rate < floor_rps else rate
    if (high - low) / low <= tolerance:
        return None
    return math.sqrt(low * high)


def result(probes: Sequence[Probe], *, max_rps: float | None = None) -> SweepResult:
    """Summarise a sweep's probes: the highest rate proven sustainable, the bracket, and why."""
    decided, pending = _outcomes(probes)
    low, high, ignored = _bracket(decided)
    notes = [f"{len(probes)} probe(s)"]
    if low is None:
        notes.append("no probe passed every objective, so no rate is proven sustainable")
        if high is not None:
            notes.append(f"the lowest rate tried, {high:.4g} rps, failed")
    elif high is None:
        capped = max_rps is not None and low >= max_rps
        notes.append(
            f"{low:.4g} rps passed and no rate failed"
            + (" (the sweep's max_rps was reached)" if capped else "")
            + ", so the true maximum is at least that"
        )
    else:
        notes.append(
            f"{low:.4g} rps passed and {high:.4g} rps failed: the maximum sustainable rate lies in between "
            f"(bracket {(high - low) / low:.1%} wide)"
        )
    inconclusive = sum(1 for p in probes if p.passed is None)
    if inconclusive:
        notes.append(f"{inconclusive} inconclusive probe(s): retried once, twice in a row counts as failed")
    if pending is not None:
        notes.append(f"the last probe at {pending:.4g} rps was inconclusive and not yet retried")
    if ignored:
        notes.append(f"{ignored} passing probe(s) above the lowest failing rate were ignored (noisy results)")
    return SweepResult(
        max_sustainable_rps=low,
        bracket_low=low,
        bracket_high=high,
        probes=tuple(probes),
        reason="; ".join(notes),
    )


def probe_duration_s(
    rate_rps: float,
    percentile: float = 99,
    min_tail_samples: int = 10,
    min_duration_s: float = 10,
    *,
    shortfall_probability: float = 0.001,
) -> float:
    """Seconds a probe at `rate_rps` must run to collect the percentile's sample minimum n >= k / (1 - q).

    Poisson arrivals at exactly n / rate seconds fall short of n half the time, which would make the
    probe invalid; so the duration is the one whose arrival count falls below n with probability
    `shortfall_probability`. The n-th arrival time of a unit-rate Poisson process is Gamma(n, 1), so
    P(N(t) < n) = P(Gamma(n) > rate * t), exactly. At least `min_duration_s`. Requests that fail do not
    count as latency samples; a probe with many errors fails its objectives anyway.
    """
    if not (math.isfinite(rate_rps) and rate_rps > 0):
        raise ValueError(f"rate_rps={rate_rps!r} must be a finite number > 0")
    if not 0 < shortfall_probability < 1:
        raise ValueError(f"shortfall_probability={shortfall_probability} must be within (0, 1)")
    needed = min_samples_for_percentile(percentile, min_tail_samples)
    expected = gamma_upper_quantile(shortfall_probability, needed)
    return max(float(min_duration_s), expected / rate_rps)
