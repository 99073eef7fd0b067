"""Confidence intervals for the counts a stage yields: a failure proportion (Wilson) and a request count (Garwood).

The verdict decides objectives by where these intervals lie relative to a threshold (harness.verdict).
"""

from __future__ import annotations

import math

from harness.analysis.distributions import chi2_quantile, normal_quantile


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} must be within 0..trials={trials}")
    z = normal_quantile(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At p = 0 or 1 the exact bound is the endpoint; floating-point noise must not move it off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def requests_to_pass_error_rate(max_error_rate: float, confidence: float = 0.95) -> int:
    """Fewest requests for an `error_rate <= max` objective to PASS even with zero failures: the Wilson
    upper bound at 0 failures is z^2 / (n + z^2), below max when n > z^2 (1 - max) / max."""
    if not 0 < max_error_rate < 1:
        raise ValueError(f"max_error_rate={max_error_rate} must be within (0, 1)")
    z = normal_quantile(0.5 + confidence / 2)
    return math.floor(z * z * (1 - max_error_rate) / max_error_rate) + 1


def garwood_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) confidence interval for a Poisson mean given an observed count."""
    if count < 0:
        raise ValueError(f"count={count} must be >= 0")
    alpha = 1 - confidence
    low = 0.0 if count == 0 else chi2_quantile(alpha / 2, 2 * count) / 2
    high = chi2_quantile(1 - alpha / 2, 2 * count + 2) / 2
    return low, high
