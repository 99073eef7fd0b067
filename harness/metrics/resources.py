"""CPU and memory of a process together with all its descendants (BentoML serve forks its workers).

CPU is the cpu-time (user + system) the tree used between two calls divided by the wall time between
them, in cores. Children that exited between two calls lose the cpu-time they used since the previous
call; children born since then count all of theirs. A vanished process yields None, never 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

from harness.model import ResourceUse

# Identifies a process across calls: a pid alone can be reused by an unrelated process.
_ProcessKey = tuple[int, float]


class ProcessTreeSampler:
    """Samples one process tree; the first `sample()` covers the time since construction."""

    def __init__(self, pid: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = pid
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._root = None
        self._previous_t_s = clock()
        self._previous_cpu_s: dict[_ProcessKey, float] = self._read_tree()[0]

    def sample(self) -> ResourceUse:
        """CPU cores since the previous call and resident memory now, summed over the tree."""
        with self._lock:
            now_s = self._clock()
            if self._root is None or not _alive(self._root):
                self._root = None
                return ResourceUse(cpu_cores=None, rss_bytes=None)
            cpu_s, rss_bytes = self._read_tree()
            if not cpu_s:
                # The root vanished while the tree was being read.
                return ResourceUse(cpu_cores=None, rss_bytes=None)
            used_s = 0.0
            for key, total_s in cpu_s.items():
                # A process new since the last call used all its cpu-time in the interval.
                used_s += max(0.0, total_s - self._previous_cpu_s.get(key, 0.0))
            elapsed_s = now_s - self._previous_t_s
            self._previous_t_s = now_s
            self._previous_cpu_s = cpu_s
            cpu_cores = used_s / elapsed_s if elapsed_s > 0 else None
            return ResourceUse(cpu_cores=cpu_cores, rss_bytes=rss_bytes)

    def _read_tree(self) -> tuple[dict[_ProcessKey, float], float | None]:
        """Cpu-seconds per live process of the tree and total RSS; empty when the root is gone."""
        if self._root is None:
            return {}, None
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return {}, None
        cpu_s: dict[_ProcessKey, float] = {}
        rss_bytes = 0.0
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                if process is self._root:
                    return {}, None
                # A child that exits mid-read simply stops counting.
                continue
            cpu_s[key] = times.user + times.system
            rss_bytes += rss
        return cpu_s, rss_bytes


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie: a killed replica whose parent has not reaped it yet is gone."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
