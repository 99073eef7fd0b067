"""Load generation with Locust: traffic shapes, payloads, the user classes and the subprocess runner.

Locust runs in its own process (gevent must not share a process with the rest of the harness);
only `locustfile.py` imports locust, and only inside that process.
"""

# Modules the rest of the harness may import; the others serve these inside the load generator (the
# locustfile and what it reads: arrivals, bodies, prompts, streaming, the bad-input mix).
# tests/test_architecture.py holds every import from outside the package to this list.
__all__ = [
    "in_cluster",
    "payloads",
    "plan",
    "pod_files",
    "reference_answers",
    "reference_recording",
    "requests",
    "runner",
    "shape",
]
