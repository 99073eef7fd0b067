"""Pure statistics over a run's records: latency histograms and percentile CIs, timelines, stage results.

Nothing in this package performs I/O; it takes plain data (harness.model records) and returns plain data.
"""

# Modules the rest of the harness may import; the others (knee) serve these.
# tests/test_architecture.py holds every import from outside the package to this list.
__all__ = [
    "autoscaling_figures",
    "capacity",
    "compare",
    "diagnosis",
    "failures",
    "faults",
    "intervals",
    "latency",
    "saturation",
    "stages",
    "sweep",
    "timeline",
    "tokens",
]
