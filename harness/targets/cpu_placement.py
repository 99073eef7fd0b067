"""CPU placement of local replicas and the load generator: a pure planner, and an adapter that enforces a
replica's CPU request as a CFS quota in its own cgroup and pins processes to CPUs.

The limiter degrades rather than fails: where cgroups or affinity cannot be written (not root, read-only
cgroupfs, no cpu controller) it records a line in `warnings` for the verdict and carries on unlimited.
"""

from __future__ import annotations

import errno
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal

from harness.errors import ConfigError
from harness.model import CpuPlacement

CFS_PERIOD_US: Final = 100_000
# The kernel rejects quotas below 1 ms.
CFS_QUOTA_MIN_US: Final = 1_000
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# A run's cgroups live under `<cpu mount>/harness-<run id>/`; harness.cleanup finds a dead run's by this prefix.
CGROUP_PREFIX: Final = "harness-"


# --------------------------------------------------------------------------- the planner (pure)


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(cpu) for cpu in cpus)


def plan_cpu_placement(
    total_cpus: Sequence[int],
    replicas: int,
    cpu_request_cores: float | None,
    loadgen_cpus_wanted: int,
    loadgen_cpus_given: Sequence[int] | None = None,
) -> CpuPlacement:
    """Give the load generator the highest-numbered CPUs it wants and the replicas the rest, when the rest
    covers the replicas' requests (one core per replica without a request); otherwise they must share:
    the replicas get every CPU and `shared` is True with the reason. CPUs the scenario gives the load
    generator (load.cpus) are its own, and the replicas get the others (every CPU when none is left)."""
    if loadgen_cpus_given:
        given = tuple(loadgen_cpus_given)
        rest = tuple(cpu for cpu in total_cpus if cpu not in given) or tuple(total_cpus)
        return CpuPlacement(
            loadgen_cpus=given,
            replica_cpus=rest,
            shared=bool(set(rest) & set(given)),
            replica_cores_needed=replicas * (cpu_request_cores or 1.0),
            reason=f"load.cpus given: load generator on {given}, replicas on {rest}",
        )
    cpus = sorted(set(total_cpus))
    if not cpus or any(cpu < 0 for cpu in cpus):
        raise ConfigError(f"CPU placement: total_cpus must be non-negative CPU ids, got {list(total_cpus)}")
    if replicas < 1:
        raise ConfigError(f"CPU placement: replicas must be at least 1, got {replicas}")
    if loadgen_cpus_wanted < 1:
        raise ConfigError(f"CPU placement: loadgen_cpus_wanted must be at least 1, got {loadgen_cpus_wanted}")
    if cpu_request_cores is not None and not cpu_request_cores > 0:
        raise ConfigError(f"CPU placement: resources.requests.cpu must be positive, got {cpu_request_cores}")

    per_replica = cpu_request_cores if cpu_request_cores is not None else 1.0
    needed_cores = replicas * per_replica
    # Whole CPUs, with a tolerance so 3 x 0.333 cores counts as one CPU, not two.
    needed_cpus = max(1, math.ceil(needed_cores - 1e-9))
    loadgen_count = min(loadgen_cpus_wanted, len(cpus))
    loadgen = tuple(cpus[len(cpus) - loadgen_count :])
    request = f"{cpu_request_cores:g} cores each" if cpu_request_cores is not None else "1 core each: no cpu request"
    if len(cpus) - loadgen_count >= needed_cpus:
        replica_cpus = tuple(cpus[: len(cpus) - loadgen_count])
        return CpuPlacement(
            loadgen_cpus=loadgen,
            replica_cpus=replica_cpus,
            shared=False,
            replica_cores_needed=needed_cores,
            reason=(
                f"separate CPUs: load generator on {_cpu_list(loadgen)}, {replicas} replica(s) ({request}) "
                f"on {_cpu_list(replica_cpus)}"
            ),
        )
    return CpuPlacement(
        loadgen_cpus=loadgen,
        replica_cpus=tuple(cpus),
        shared=True,
        replica_cores_needed=needed_cores,
        reason=(
            f"shared CPUs: {replicas} replica(s) need {needed_cores:g} cores ({request}) and the load generator "
            f"{loadgen_cpus_wanted} CPU(s), but only {len(cpus)} CPU(s) are available; the load generator runs on "
            f"{_cpu_list(loadgen)}, which the replicas also use, so each slows the other"
        ),
    )


# --------------------------------------------------------------------------- the limiter (adapter)

CgroupLayout = Literal["v1", "v2"]


def detect_cgroup_cpu(root: Path = Path("/sys/fs/cgroup")) -> tuple[CgroupLayout, Path] | None:
    """Where the cpu controller is mounted: cgroup v2 (unified, cpu in cgroup.controllers) or v1."""
    try:
        controllers = (root / "cgroup.controllers").read_text().split()
    except OSError:
        controllers = []
    if "cpu" in controllers:
        return "v2", root
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if (root / name / "cpu.cfs_quota_us").exists():
            return "v1", root / name
    return None


class CgroupCpuLimiter:
    """Per-replica cgroups under <cpu mount>/harness-<run_id>/<replica> with a CFS quota, plus CPU pinning.

    Call `limit` right after starting a replica: its process and current descendants join the cgroup, and
    workers forked later inherit it. `cleanup` moves any remaining processes out and removes the cgroups.
    """

    def __init__(self, run_id: str, root: Path = Path("/sys/fs/cgroup")) -> None:
        if not _NAME.match(run_id):
            raise ConfigError(f"CPU limiter: run id '{run_id}' must match {_NAME.pattern}")
        self.run_id = run_id
        self.warnings: list[str] = []
        # Reentrant: create() warns while holding it.
        self._lock = threading.RLock()
        detected = detect_cgroup_cpu(root)
        self.layout: CgroupLayout | None = detected[0] if detected else None
        self._mount: Path | None = detected[1] if detected else None
        self.run_group: Path | None = self._mount / f"{CGROUP_PREFIX}{run_id}" if self._mount else None
        self._groups: dict[str, Path] = {}

    # ------------------------------------------------------------------ public

    def limit(
        self,
        replica: str,
        pid: int,
        cpu_cores: float | None,
        cpus: Sequence[int] | None = None,
        *,
        request_cores: float | None = None,
    ) -> Path | None:
        """Enforce `cpu_cores` as a quota (None: no quota) and `request_cores` as a relative weight (None:
        the default weight) on a process tree, and pin it to `cpus` (None: no pinning); returns the
        replica's cgroup, or None when neither was set. This is how the kubelet enforces a container's
        limits.cpu (CFS quota) and requests.cpu (cpu.shares / cpu.weight)."""
        group = None
        if cpu_cores is not None or request_cores is not None:
            group = self.create(replica, cpu_cores, request_cores=request_cores)
            if group is not None:
                self.add_process_tree(replica, pid)
        if cpus is not None:
            self.pin(pid, cpus)
        return group

    def create(self, replica: str, cpu_cores: float | None, *, request_cores: float | None = None) -> Path | None:
        """Make (or update) the replica's cgroup with a quota of `cpu_cores` (None: unlimited) and a weight
        for `request_cores`; None (and a warning) if not possible."""
        if not _NAME.match(replica):
            raise ConfigError(f"CPU limiter: replica id '{replica}' must match {_NAME.pattern}")
        for name, value in (("cpu limit", cpu_cores), ("cpu request", request_cores)):
            if value is not None and not value > 0:
                raise ConfigError(f"CPU limiter: {name} must be positive, got {value}")
        shown = cpu_cores if cpu_cores is not None else request_cores
        if self.run_group is None or self._mount is None:
            self._warn(
                f"replica {replica}: no cgroup cpu controller found; its cpu budget of {shown:g} cores is not enforced"
            )
            return None
        quota_us = None if cpu_cores is None else max(CFS_QUOTA_MIN_US, round(cpu_cores * CFS_PERIOD_US))
        # The kubelet's conversions: shares = request x 1024; cgroup v2 weight from shares.
        shares = None if request_cores is None else max(2, round(request_cores * 1024))
        group = self.run_group / replica
        with self._lock:
            try:
                self.run_group.mkdir(exist_ok=True)
                if self.layout == "v2":
                    # Children of a v2 cgroup get the cpu controller only when the parent delegates it.
                    self._enable_cpu_controller(self._mount)
                    self._enable_cpu_controller(self.run_group)
                group.mkdir(exist_ok=True)
                self._groups[replica] = group
                if self.layout == "v2":
                    (group / "cpu.max").write_text(f"{quota_us if quota_us else 'max'} {CFS_PERIOD_US}\n")
                    if shares is not None:
                        weight = 1 + ((shares - 2) * 9999) // 262142
                        (group / "cpu.weight").write_text(f"{weight}\n")
                else:
                    (group / "cpu.cfs_period_us").write_text(f"{CFS_PERIOD_US}\n")
                    (group / "cpu.cfs_quota_us").write_text(f"{quota_us if quota_us else -1}\n")
                    if shares is not None:
                        (group / "cpu.shares").write_text(f"{shares}\n")
            except OSError as error:
                self._warn(
                    f"replica {replica}: cannot set a cpu budget of {shown:g} cores in {group} "
                    f"({error.strerror or error}); it is not enforced"
                )
                return None
        return group

    def add_process_tree(self, replica: str, pid: int) -> None:
        """Move a process and all its current descendants into the replica's cgroup."""
        group = self._groups.get(replica)
        if group is None:
            return
        for member in [pid, *_descendants(pid)]:
            try:
                (group / "cgroup.procs").write_text(f"{member}\n")
            except ProcessLookupError:
                continue
            except OSError as error:
                if error.errno == errno.ESRCH:
                    continue
                self._warn(f"replica {replica}: cannot move process {member} into {group} ({error.strerror or error})")

    def pin(self, pid: int, cpus: Sequence[int]) -> None:
        """Pin every thread of a process and its descendants to `cpus` (later children inherit it)."""
        for member in [pid, *_descendants(pid)]:
            for thread_id in _threads(member):
                try:
                    os.sched_setaffinity(thread_id, set(cpus))
                except ProcessLookupError:
                    continue
                except OSError as error:
                    self._warn(f"cannot pin process {member} to CPUs {_cpu_list(cpus)} ({error.strerror or error})")
                    return

    def cleanup(self, timeout_s: float = 5.0) -> None:
        """Move remaining processes to the root cgroup and remove every cgroup this limiter made."""
        if self.run_group is None or self._mount is None:
            return
        with self._lock:
            groups = list(self._groups.values())
            self._groups.clear()
        for group in groups:
            self._remove(group, timeout_s)
        if self.run_group.exists():
            self._remove(self.run_group, timeout_s)

    # ------------------------------------------------------------------ internals

    def _remove(self, group: Path, timeout_s: float) -> None:
        error = remove_cgroup(group, self._move_to_root, timeout_s)
        if error is not None:
            self._warn(f"cannot remove cgroup {group} ({error.strerror or error}); remove it by hand with rmdir")

    def _move_to_root(self, pid: int) -> None:
        assert self._mount is not None
        try:
            (self._mount / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as error:
            if error.errno != errno.ESRCH:
                raise

    @staticmethod
    def _enable_cpu_controller(group: Path) -> None:
        control = group / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu\n")

    def _warn(self, message: str) -> None:
        with self._lock:
            if message not in self.warnings:
                self.warnings.append(message)


def remove_cgroup(group: Path, evict: Callable[[int], None], timeout_s: float = 5.0) -> OSError | None:
    """Remove a cgroup directory, its child groups first: hand each member's pid to `evict` (which moves it
    out or kills it), then rmdir, again while the kernel answers EBUSY (an exiting process still listed) for
    up to `timeout_s`. None once the group is gone, else the error that kept it."""
    for child in sorted((path for path in group.iterdir() if path.is_dir()), reverse=True) if group.is_dir() else []:
        remove_cgroup(child, evict, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            for member in (group / "cgroup.procs").read_text().split():
                evict(int(member))
            group.rmdir()
            return None
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            return error


def _descendants(pid: int) -> list[int]:
    """Every descendant pid, from /proc (children lists of each thread), breadth first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop(0)
        for thread_id in _threads(parent):
            try:
                text = Path(f"/proc/{parent}/task/{thread_id}/children").read_text()
            except OSError:
                continue
            for child in text.split():
                if int(child) not in found:
                    found.append(int(child))
                    queue.append(int(child))
    return found


def _threads(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []
