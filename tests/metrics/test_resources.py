"""ProcessTreeSampler on real process trees: children count, vanished processes give None."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from harness.metrics.resources import ProcessTreeSampler

pytestmark = pytest.mark.integration

# A parent that sleeps while its children burn CPU; every loop is bounded in time.
_PARENT = """
import subprocess, sys, time
busy = "import time\\nend = time.time() + {busy_s}\\nwhile time.time() < end: pass"
children = [subprocess.Popen([sys.executable, "-c", busy]) for _ in range({children})]
time.sleep({parent_s})
for child in children:
    child.kill()
"""


SpawnTree = Callable[[int, float, float], "subprocess.Popen[bytes]"]


@pytest.fixture
def spawn_tree() -> Iterator[SpawnTree]:
    """spawn(children, busy_s, parent_s): a sleeping parent with `children` busy children, waited for."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(children: int, busy_s: float, parent_s: float) -> subprocess.Popen[bytes]:
        code = _PARENT.format(children=children, busy_s=busy_s, parent_s=parent_s)
        process = subprocess.Popen([sys.executable, "-c", code])
        started.append(process)
        deadline = time.monotonic() + 60
        while len(psutil.Process(process.pid).children()) < children:
            assert time.monotonic() < deadline, f"the parent did not start {children} children within 60 s"
            time.sleep(0.05)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
        process.kill()
        process.wait(10)


def _cpu_s(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


# Exclusive: the busy children's CPU share is measured, which other tests' load would change.
@pytest.mark.machine_wide
def test_cpu_and_rss_cover_the_children(spawn_tree: SpawnTree) -> None:
    parent = spawn_tree(2, 15, 15)
    root = psutil.Process(parent.pid)
    children = root.children()
    assert len(children) == 2
    sampler = ProcessTreeSampler(parent.pid)
    started_s = time.monotonic()
    children_before_s = _cpu_s(children)
    root_before_s = _cpu_s([root])
    time.sleep(1.5)
    use = sampler.sample()
    elapsed_s = time.monotonic() - started_s
    children_cores = (_cpu_s(children) - children_before_s) / elapsed_s
    root_cores = (_cpu_s([root]) - root_before_s) / elapsed_s

    assert use.cpu_cores is not None and use.rss_bytes is not None
    # The sleeping parent alone uses almost nothing; the tree figure is its busy children's.
    assert root_cores < 0.1
    assert use.cpu_cores > 0.2
    assert use.cpu_cores == pytest.approx(children_cores + root_cores, abs=0.15)
    # Three Python processes of about the same size.
    assert use.rss_bytes > 2 * root.memory_info().rss


@pytest.mark.machine_wide
def test_each_call_covers_only_the_time_since_the_previous(spawn_tree: SpawnTree) -> None:
    parent = spawn_tree(1, 1.0, 15)
    sampler = ProcessTreeSampler(parent.pid)
    time.sleep(0.8)
    busy = sampler.sample()
    # The child stops burning after 1 s and is killed/exits; then the tree is idle.
    time.sleep(1.5)
    sampler.sample()
    time.sleep(1.0)
    idle = sampler.sample()
    assert busy.cpu_cores is not None and busy.cpu_cores > 0.2
    assert idle.cpu_cores is not None and idle.cpu_cores < 0.1


def test_a_vanished_process_gives_none(spawn_tree: SpawnTree) -> None:
    parent = spawn_tree(1, 10, 10)
    sampler = ProcessTreeSampler(parent.pid)
    for child in psutil.Process(parent.pid).children():
        child.kill()
    parent.kill()
    # Not yet reaped: a zombie counts as gone too. The kill takes effect when the kernel next runs the process,
    # which a loaded machine delays: wait for the zombie rather than sleep a fixed time.
    deadline_s = time.monotonic() + 60
    while psutil.Process(parent.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline_s, "the killed parent did not become a zombie within 60 s"
        time.sleep(0.05)
    use = sampler.sample()
    assert use.cpu_cores is None and use.rss_bytes is None
    parent.wait(5)
    use = sampler.sample()
    assert use.cpu_cores is None and use.rss_bytes is None


def test_a_pid_that_never_existed_gives_none() -> None:
    pid = max(psutil.pids()) + 100_000
    use = ProcessTreeSampler(pid).sample()
    assert use.cpu_cores is None and use.rss_bytes is None
