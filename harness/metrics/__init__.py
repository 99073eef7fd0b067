"""Collectors: replica /metrics scrapes, process-tree CPU and memory, the run's time series, and the harness's own
Prometheus metrics."""
