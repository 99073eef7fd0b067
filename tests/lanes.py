"""Which lane of `make test` runs a test, derived from the markers that say what the test exercises; the one
place scheduling is decided (the Makefile runs `pytest --lane NAME` per lane, and the lanes partition the suite).

What a test exercises, by marker (pyproject.toml's [tool.pytest.ini_options] markers):
- `integration`: starts real processes (servers, Locust, the harness's command, Docker containers); a test that
  starts one without the marker fails (tests/conftest.py, from the program audit's record of executions);
- `cluster`: needs the project's Kubernetes cluster (make cluster);
- `kind`: creates kind clusters from the node image of make kind-setup (one at a time, beside the cluster lane);
- `load_timing`: asserts rates or times of load it drives, which CPU-heavy neighbours would stretch;
- `machine_wide`: measures CPU shares or load rates, or acts on the whole machine (sweeps of dead harnesses,
  image prunes), so nothing else may run beside it;
- `capacity`: searches a server's capacity by load near it (`harness sweep`): light on CPU itself (about a fifth
  of a core each), it needs light neighbours: two at once beside the load-timing tests, after the heavy lanes.
"""

from __future__ import annotations

from collections.abc import Collection

# In the order `make test` starts them; the Makefile says which run beside which.
LANES = ("cluster", "kind", "unit", "local", "load-timing", "machine-wide", "capacity")


def lane_of(markers: Collection[str]) -> str:
    """The one lane a test with these markers runs in: what needs the machine alone first, then capacity searches
    and timing-bound load (beside each other only), then the cluster, then tests that start processes, then the
    rest."""
    if "machine_wide" in markers:
        return "machine-wide"
    if "capacity" in markers:
        return "capacity"
    if "load_timing" in markers:
        return "load-timing"
    if "cluster" in markers:
        return "cluster"
    if "kind" in markers:
        return "kind"
    if "integration" in markers:
        return "local"
    return "unit"
