"""CPU placement: the pure planner (examples and properties) and the real cgroup limiter on this machine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cleanup import harness_cgroups
from harness.errors import ConfigError
from harness.targets.cpu_placement import CgroupCpuLimiter, detect_cgroup_cpu, plan_cpu_placement

# --------------------------------------------------------------------------- planner


def test_two_cpus_fit_two_half_core_replicas_beside_one_loadgen_cpu() -> None:
    placement = plan_cpu_placement([0, 1], replicas=2, cpu_request_cores=0.5, loadgen_cpus_wanted=1)
    assert placement.loadgen_cpus == (1,)
    assert placement.replica_cpus == (0,)
    assert not placement.shared
    assert placement.replica_cores_needed == 1.0


def test_two_cpus_must_be_shared_by_two_unlimited_replicas_and_the_loadgen() -> None:
    placement = plan_cpu_placement([0, 1], replicas=2, cpu_request_cores=None, loadgen_cpus_wanted=1)
    assert placement.shared
    assert placement.loadgen_cpus == (1,)
    assert placement.replica_cpus == (0, 1)
    assert "only 2 CPU(s)" in placement.reason and "no cpu request" in placement.reason


def test_a_single_cpu_is_always_shared() -> None:
    placement = plan_cpu_placement([3], replicas=1, cpu_request_cores=0.1, loadgen_cpus_wanted=1)
    assert placement.shared and placement.loadgen_cpus == (3,) and placement.replica_cpus == (3,)


def test_fractional_requests_round_up_to_whole_cpus() -> None:
    # 3 x 0.4 = 1.2 cores need 2 CPUs.
    assert plan_cpu_placement([0, 1, 2], 3, 0.4, 1).replica_cpus == (0, 1)
    assert plan_cpu_placement([0, 1, 2], 3, 0.4, 2).shared
    # 3 x 1/3 is one CPU despite floating point.
    assert not plan_cpu_placement([0, 1], 3, 1 / 3, 1).shared


def test_cpus_given_to_the_load_generator_are_its_own_and_the_replicas_get_the_rest() -> None:
    placement = plan_cpu_placement([0, 1, 2], 2, 0.5, 1, loadgen_cpus_given=[2])
    assert (placement.loadgen_cpus, placement.replica_cpus, placement.shared) == ((2,), (0, 1), False)
    assert placement.replica_cores_needed == 1.0 and placement.reason.startswith("load.cpus given")
    # Every CPU given to the load generator: the replicas share them all.
    everything = plan_cpu_placement([0, 1], 2, None, 1, loadgen_cpus_given=[0, 1])
    assert (everything.replica_cpus, everything.shared, everything.replica_cores_needed) == ((0, 1), True, 2.0)


@pytest.mark.parametrize(
    ("cpus", "replicas", "cpu_request", "loadgen"),
    [([], 1, None, 1), ([0, -1], 1, None, 1), ([0, 1], 0, None, 1), ([0, 1], 1, None, 0), ([0, 1], 1, 0.0, 1)],
)
def test_invalid_inputs_are_config_errors(
    cpus: list[int], replicas: int, cpu_request: float | None, loadgen: int
) -> None:
    with pytest.raises(ConfigError, match="CPU placement"):
        plan_cpu_placement(cpus, replicas, cpu_request, loadgen)


@given(
    st.lists(st.integers(min_value=0, max_value=127), min_size=1, max_size=32),
    st.integers(min_value=1, max_value=64),
    st.one_of(st.none(), st.floats(min_value=0.01, max_value=16, allow_nan=False)),
    st.integers(min_value=1, max_value=40),
)
def test_placement_properties(total: list[int], replicas: int, request: float | None, loadgen_wanted: int) -> None:
    placement = plan_cpu_placement(total, replicas, request, loadgen_wanted)
    cpus = set(total)
    loadgen, replica_cpus = set(placement.loadgen_cpus), set(placement.replica_cpus)
    assert loadgen and replica_cpus and loadgen <= cpus and replica_cpus <= cpus
    assert list(placement.loadgen_cpus) == sorted(loadgen) and list(placement.replica_cpus) == sorted(replica_cpus)
    # The load generator gets what it asks for, as far as the machine allows.
    assert len(loadgen) == min(loadgen_wanted, len(cpus))
    assert placement.shared == bool(loadgen & replica_cpus)
    needed_cpus = max(1, math.ceil(replicas * (request if request is not None else 1.0) - 1e-9))
    if len(cpus) >= len(loadgen) + needed_cpus:
        # Room for both: separate, and every other CPU goes to the replicas.
        assert not placement.shared
        assert loadgen | replica_cpus == cpus
        assert len(replica_cpus) >= needed_cpus
    else:
        assert placement.shared and replica_cpus == cpus and placement.reason.startswith("shared")
    assert placement == plan_cpu_placement(list(reversed(total)), replicas, request, loadgen_wanted)


# --------------------------------------------------------------------------- cgroup detection


def test_detects_v2_when_the_unified_root_has_the_cpu_controller(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert detect_cgroup_cpu(tmp_path) == ("v2", tmp_path)


def test_detects_v1_cpu_mounts(tmp_path: Path) -> None:
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    # A hybrid layout whose unified root lacks the cpu controller still uses v1.
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    assert detect_cgroup_cpu(tmp_path) == ("v1", tmp_path / "cpu,cpuacct")


def test_cleanup_finds_a_run_group_by_the_limiters_name_for_it(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    limiter = CgroupCpuLimiter("run-x", root=tmp_path)
    assert limiter.run_group is not None
    limiter.run_group.mkdir()
    assert harness_cgroups(tmp_path) == {"run-x": [limiter.run_group]}


def test_no_cgroup_cpu_controller_degrades_with_a_warning(tmp_path: Path) -> None:
    limiter = CgroupCpuLimiter("run-x", root=tmp_path)
    assert limiter.layout is None
    assert limiter.limit("r1", os.getpid(), 0.5) is None
    assert len(limiter.warnings) == 1 and "not enforced" in limiter.warnings[0]
    limiter.cleanup()


def test_invalid_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="run id"):
        CgroupCpuLimiter("../escape")


# --------------------------------------------------------------------------- the real limiter

BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
BUSY_PARENT = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {BUSY!r}])\n"
    "end = time.time() + 30\nwhile time.time() < end: pass\n"
)


@pytest.fixture
def busy_process() -> Iterator[subprocess.Popen[bytes]]:
    """A busy parent with one busy child (both bounded to 30 s); needs root and a cgroup cpu controller."""
    if os.geteuid() != 0 or detect_cgroup_cpu() is None:
        pytest.fail("the cgroup limiter tests need root and a cgroup cpu controller (v1 or v2)")
    process = subprocess.Popen([sys.executable, "-c", BUSY_PARENT])
    # The tests limit the whole tree, so the child must exist first; a loaded machine may take seconds to start it.
    deadline = time.monotonic() + 60
    while not psutil.Process(process.pid).children():
        assert time.monotonic() < deadline, "the busy parent did not start its child within 60 s"
        time.sleep(0.05)
    yield process
    if process.poll() is None:
        for member in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
            member.kill()
    process.wait(10)


def tree_cores(pid: int, seconds: float) -> float:
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]

    def used_s() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in tree)

    start_used_s, start_s = used_s(), time.monotonic()
    time.sleep(seconds)
    return (used_s() - start_used_s) / (time.monotonic() - start_s)


# Exclusive: how much CPU the busy tree gets is measured, which other tests' load would change.
@pytest.mark.integration
@pytest.mark.machine_wide
def test_a_quarter_core_quota_holds_a_busy_process_tree(busy_process: subprocess.Popen[bytes]) -> None:
    run_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
    limiter = CgroupCpuLimiter(run_id)
    try:
        group = limiter.limit("replica-1", busy_process.pid, 0.25, cpus=[0])
        assert group is not None, limiter.warnings
        assert limiter.warnings == []
        members = {int(pid) for pid in (group / "cgroup.procs").read_text().split()}
        child = psutil.Process(busy_process.pid).children()[0]
        assert members == {busy_process.pid, child.pid}
        if limiter.layout == "v1":
            assert (group / "cpu.cfs_quota_us").read_text().strip() == "25000"
            assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
        else:
            assert (group / "cpu.max").read_text().split() == ["25000", "100000"]
        assert psutil.Process(busy_process.pid).cpu_affinity() == [0]
        assert child.cpu_affinity() == [0]

        # Two busy loops, unlimited, would use up to 2 cores.
        cores = tree_cores(busy_process.pid, 2.0)
        assert 0.02 < cores < 0.4
    finally:
        limiter.cleanup()
    assert limiter.run_group is not None and not limiter.run_group.exists()
    # Still running, moved back out of the removed cgroup, and no longer limited (unpinned again so two busy
    # loops can show more than the quota allowed).
    assert busy_process.poll() is None
    limiter.pin(busy_process.pid, sorted(os.sched_getaffinity(0)))
    assert tree_cores(busy_process.pid, 1.0) > 0.3


@pytest.mark.integration
def test_cleanup_removes_cgroups_of_ended_processes(busy_process: subprocess.Popen[bytes]) -> None:
    limiter = CgroupCpuLimiter(f"test-{os.getpid()}-{time.monotonic_ns()}")
    group = limiter.limit("replica-1", busy_process.pid, 0.5)
    assert group is not None and group.exists()
    for member in [*psutil.Process(busy_process.pid).children(recursive=True), psutil.Process(busy_process.pid)]:
        member.kill()
    busy_process.wait(10)
    limiter.cleanup()
    assert not group.exists() and limiter.run_group is not None and not limiter.run_group.exists()
    assert limiter.warnings == []


@pytest.mark.integration
def test_without_privileges_the_limiter_degrades_to_warnings() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops to the 'nobody' user and so must start as root")
    code = (
        "import json, os, time\n"
        "from harness.targets.cpu_placement import CgroupCpuLimiter\n"
        "limiter = CgroupCpuLimiter(f'test-nobody-{os.getpid()}')\n"
        "group = limiter.limit('r1', os.getpid(), 0.5, cpus=[0])\n"
        "limiter.cleanup()\n"
        "print(json.dumps({'group': str(group) if group else None, 'warnings': limiter.warnings,"
        " 'affinity': sorted(os.sched_getaffinity(0))}))\n"
    )
    # The venv's interpreter lives under /root, which 'nobody' cannot read; the module needs only the
    # standard library, so Debian's own Python runs it.
    result = subprocess.run(
        ["/usr/bin/python3", "-c", code],
        user=65534,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["group"] is None
    assert any("not enforced" in warning for warning in report["warnings"])
    # Pinning one's own process needs no privilege.
    assert report["affinity"] == [0]


@pytest.mark.integration
@pytest.mark.machine_wide
def test_a_cpu_request_becomes_a_weight_and_no_quota(busy_process: subprocess.Popen[bytes]) -> None:
    limiter = CgroupCpuLimiter(f"test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        group = limiter.limit("replica-1", busy_process.pid, None, request_cores=0.5)
        assert group is not None, limiter.warnings
        if limiter.layout == "v1":
            assert (group / "cpu.shares").read_text().strip() == "512"  # the kubelet's 0.5 x 1024
            assert (group / "cpu.cfs_quota_us").read_text().strip() == "-1"
        else:
            assert (group / "cpu.max").read_text().split()[0] == "max"
            assert int((group / "cpu.weight").read_text()) == 1 + (512 - 2) * 9999 // 262142
        # A weight alone does not cap an idle machine: the tree may use more than its request.
        assert tree_cores(busy_process.pid, 1.0) > 0.55
    finally:
        limiter.cleanup()
