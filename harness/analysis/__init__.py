"""Pure statistics over a run's records: latency histograms and percentile CIs, timelines, stage results.

Nothing in this package performs I/O; it takes plain data (harness.model records) and returns plain data.
"""
