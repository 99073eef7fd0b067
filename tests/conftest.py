"""Settings shared by the whole suite."""

from __future__ import annotations

import pytest
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """make test selects each lane by mark: a test marked both `quiet` and `exclusive` would run twice."""
    both = [item.nodeid for item in items if item.get_closest_marker("quiet") and item.get_closest_marker("exclusive")]
    if both:
        raise pytest.UsageError(f"marked both quiet and exclusive (choose one): {', '.join(both)}")
