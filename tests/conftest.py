"""Settings shared by the whole suite."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Deterministic on a loaded 2-core machine: no per-example deadline and no "too slow" health check (both
# time the example, which other tests' load stretches), and a fixed seed per test without an example
# database, so every run draws the same examples. A test may still ask for more examples.
settings.register_profile(
    "harness",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
settings.load_profile("harness")
