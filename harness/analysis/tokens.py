"""Streamed requests' figures: which requests count towards goodput, and a stage's output token rate and goodput
with their confidence intervals. Pure: numbers in, numbers out.

Goodput (as vLLM's benchmark_serving and DistServe define it): requests per second that met every per-request
limit (time to first token, time per output token, end-to-end latency). The output token rate's interval treats
the stage's requests as a compound Poisson process (Poisson arrivals, each bringing its own number of tokens L):
Var(total tokens) = sum of L^2, so the interval is (S +- z * sqrt(sum L^2)) / duration, which for equal lengths
is the normal approximation of the request count's Poisson interval scaled by L.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from harness.analysis.intervals import garwood_interval
from harness.model import RequestLimits


def meets_limits(limits: RequestLimits, ttft_s: float | None, tpot_s: float | None, e2e_s: float) -> bool:
    """Whether one streamed request met every limit. A request without a first token meets no TTFT limit; one
    with a single token has no time per output token, and so meets any TPOT limit (as vLLM counts it)."""
    if limits.ttft_ms is not None and (ttft_s is None or ttft_s * 1000.0 > limits.ttft_ms):
        return False
    if limits.tpot_ms is not None and tpot_s is not None and tpot_s * 1000.0 > limits.tpot_ms:
        return False
    return limits.latency_ms is None or e2e_s * 1000.0 <= limits.latency_ms


def output_token_rate(
    output_tokens: int, output_tokens_squares: int, duration_s: float, confidence: float
) -> tuple[float, float, float] | None:
    """(tokens per second, CI low, CI high) over a stage; None without duration. Compound Poisson (module
    docstring); the lower bound is never below 0."""
    if duration_s <= 0:
        return None
    if output_tokens < 0 or output_tokens_squares < output_tokens:
        raise ValueError(
            f"output_tokens={output_tokens}, output_tokens_squares={output_tokens_squares}: the sum of squares of "
            "whole numbers >= 0 is at least their sum"
        )
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    half_width = z * math.sqrt(output_tokens_squares)
    return (
        output_tokens / duration_s,
        max(0.0, output_tokens - half_width) / duration_s,
        (output_tokens + half_width) / duration_s,
    )


def goodput_rate(good_requests: int, duration_s: float, confidence: float) -> tuple[float, float, float] | None:
    """(good requests per second, CI low, CI high) over a stage, Poisson-exact (Garwood); None without duration."""
    if duration_s <= 0:
        return None
    low, high = garwood_interval(good_requests, confidence)
    return good_requests / duration_s, low / duration_s, high / duration_s
