"""The knee of a latency-versus-throughput curve: where latency starts to climb steeply (Kneedle).

Satopaa, Albrecht, Irwin, Raghavan, "Finding a 'Kneedle' in a Haystack: Detecting Knee Points in
System Behavior" (ICDCS workshops, 2011), for a convex increasing curve, offline:

1. sort the points by throughput and normalise both axes to [0, 1] by their min and max;
2. the difference curve of a convex increasing curve is D_i = x_i - y_i (how far the point lies below
   the diagonal from the first to the last point; the paper's flip of a convex curve into a concave one
   comes to the same thing);
3. the knee candidate is the maximum of D. It is accepted (the paper's threshold rule) when D later
   falls below T = D_max - S * mean(x_{i+1} - x_i), S being the sensitivity; a curve that never bends
   (linear: D = 0 everywhere) or bends the other way (concave: D <= 0) has no knee.

Normalising makes the result invariant to positive scaling (and shifting) of either axis, so the knee
does not depend on units. With n points mean(dx) = 1/(n-1), so with the paper's S = 1 a three-point
curve needs D_max > 0.5 to show a knee: few points must bend sharply to prove one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Difference values closer than this are ties (resolved towards lower throughput), so that the
# floating-point noise of normalising rescaled data cannot move the knee.
_TIE = 1e-9


@dataclass(frozen=True)
class Knee:
    """The knee point: its throughput, its latency, and its position in the caller's sequences."""

    rps: float
    latency_s: float
    index: int


def find_knee(throughput_rps: Sequence[float], latency_s: Sequence[float], *, sensitivity: float = 1.0) -> Knee | None:
    """The knee of latency against throughput (Kneedle, convex increasing), or None when there is none.

    None when fewer than 3 distinct throughput values are given, when latency does not vary, or when
    the curve does not bend upwards clearly enough (see the module docstring for the rule).
    """
    if len(throughput_rps) != len(latency_s):
        raise ValueError(
            f"throughput_rps has {len(throughput_rps)} values but latency_s has {len(latency_s)}; expected pairs"
        )
    if sensitivity < 0 or not math.isfinite(sensitivity):
        raise ValueError(f"sensitivity={sensitivity} must be a finite number >= 0")
    for name, values in (("throughput_rps", throughput_rps), ("latency_s", latency_s)):
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{name} holds non-finite values {bad[:3]}; expected finite numbers")

    if len(set(throughput_rps)) < 3:
        return None
    # Ties in throughput keep the lower latency first, so a repeated measurement cannot invent a bend.
    order = sorted(range(len(throughput_rps)), key=lambda i: (throughput_rps[i], latency_s[i]))
    x_min, x_max = min(throughput_rps), max(throughput_rps)
    y_min, y_max = min(latency_s), max(latency_s)
    if y_max == y_min:
        return None
    x_n = [(throughput_rps[i] - x_min) / (x_max - x_min) for i in order]
    y_n = [(latency_s[i] - y_min) / (y_max - y_min) for i in order]
    difference = [x - y for x, y in zip(x_n, y_n, strict=True)]

    d_max = max(difference)
    if d_max <= _TIE:
        return None
    best = next(i for i, d in enumerate(difference) if d >= d_max - _TIE)
    threshold = difference[best] - sensitivity / (len(order) - 1)
    if not any(d < threshold - _TIE for d in difference[best + 1 :]):
        return None
    index = order[best]
    return Knee(rps=throughput_rps[index], latency_s=latency_s[index], index=index)
