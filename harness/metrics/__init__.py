"""Collectors: replica /metrics scrapes, process-tree CPU and memory, the run's time series, and the harness's own
Prometheus metrics."""

# Modules the rest of the harness may import; the others (the dashboard, built by make) serve these or make.
# tests/test_architecture.py holds every import from outside the package to this list.
__all__ = [
    "collector",
    "exporter",
    "promql",
    "remote_write",
    "resources",
    "scrape",
]
