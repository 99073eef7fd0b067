"""harness.processes and harness.cleanup with real processes: marks, complete stops, parent-death signals
tied to the harness's lifetime, the watchdog's sweep after a SIGKILL, and `harness cleanup`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness import cleanup
from harness.cleanup import clean_up_dead_runs, clean_up_run, watch
from harness.model import Leftover
from harness.processes import (
    OWNER_ENV,
    REPLICA_ENV,
    RUN_ENV,
    marked_env,
    marked_processes,
    owner_alive,
    owner_id,
    spawn,
    stop_tree,
)
from harness.targets.cpu_placement import CgroupCpuLimiter
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
# Generous bounds for things that take milliseconds: a loaded 2-core machine must not miss them.
GONE_WITHIN_S = 15.0


def gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


@pytest.fixture
def run_id() -> Iterator[str]:
    run = f"test-{uuid.uuid4().hex[:10]}"
    yield run
    for process, _ in marked_processes(run_id=run):
        process.kill()


def dead_owner() -> str:
    """The identity of a process that has exited (its pid is not reused within the test)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = owner_id(child.pid)
    child.wait()
    return owner


# --------------------------------------------------------------------------- owners


@pytest.mark.integration
def test_an_owner_is_alive_while_its_process_runs_and_not_after() -> None:
    assert owner_alive(owner_id())
    assert not owner_alive(dead_owner())
    # Marks this harness cannot judge are never swept: another host's, or not a mark at all.
    host, pid, started = owner_id().split("-")
    assert owner_alive(f"{'0' * 8 if host != '0' * 8 else '1' * 8}-{pid}-{started}")
    assert owner_alive("not-a-mark")
    # A reused pid is not the same owner.
    assert not owner_alive(f"{host}-{pid}-{int(started) + 1}")


# --------------------------------------------------------------------------- spawn and stop


@pytest.mark.integration
def test_children_carry_the_mark_and_a_child_started_by_a_short_lived_thread_survives_the_thread(run_id: str) -> None:
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: started.append(spawn(["sleep", "60"], run_id=run_id, replica="replica-1")))
    thread.start()
    thread.join()
    (child,) = started
    try:
        time.sleep(0.5)
        # The parent-death signal follows the thread that forked: a forker thread that lives as long as
        # the harness keeps the autoscaler's replicas from dying with the autoscaler's thread.
        assert child.poll() is None, "the child outlived the thread that asked for it"
        ((found, mark),) = marked_processes(run_id=run_id)
        assert found.pid == child.pid
        assert mark == {OWNER_ENV: owner_id(), RUN_ENV: run_id, REPLICA_ENV: "replica-1"}
    finally:
        stop_tree(child, grace_s=5)
    assert child.returncode is not None


ESCAPING_CHILD = (
    # A supervisor whose worker leaves its session (as BentoML's do) and stays when the supervisor dies.
    "import os, subprocess, sys, time\n"
    "worker = subprocess.Popen(['sleep', '120'], start_new_session=True)\n"
    "print(worker.pid, flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.mark.integration
def test_stop_tree_with_the_mark_also_stops_a_worker_whose_supervisor_was_killed(run_id: str) -> None:
    supervisor = spawn(
        [sys.executable, "-c", ESCAPING_CHILD], run_id=run_id, replica="replica-1", stdout=subprocess.PIPE
    )
    assert supervisor.stdout is not None
    worker_pid = int(supervisor.stdout.readline())
    other = spawn(["sleep", "120"], run_id=run_id, replica="replica-2")
    supervisor.kill()
    supervisor.wait()
    assert psutil.Process(worker_pid).ppid() != supervisor.pid, "the worker is an orphan now"
    stop_tree(supervisor, grace_s=1, mark={RUN_ENV: run_id, REPLICA_ENV: "replica-1"})
    wait_until(lambda: gone([worker_pid]), "the orphaned worker stopped", GONE_WITHIN_S)
    assert other.poll() is None, "another replica of the run is left alone"
    stop_tree(other, grace_s=1)


# --------------------------------------------------------------------------- the watchdog


FAKE_HARNESS = """
import sys, time
from harness.processes import RunWatchdog, spawn
run_id = sys.argv[1]
watchdog = RunWatchdog(run_id)
supervisor = spawn([sys.executable, "-c", sys.argv[2]], run_id=run_id, replica="replica-1", death_signal=0)
print(watchdog.process.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.integration
def test_stop_tree_with_the_mark_spares_another_harnesses_process_of_the_same_run_id(run_id: str) -> None:
    """Two harnesses whose runs share an id (a run id given twice) stop only their own processes."""
    mine = spawn(["sleep", "120"], run_id=run_id, replica="loadgen")
    another_harness = owner_id(os.getppid())
    theirs = subprocess.Popen(["sleep", "120"], env=marked_env(os.environ, run_id, "loadgen", owner=another_harness))
    try:
        stop_tree(mine, grace_s=1, mark={RUN_ENV: run_id, REPLICA_ENV: "loadgen"})
        assert mine.poll() is not None
        assert theirs.poll() is None, "the other harness's process was killed"
    finally:
        theirs.kill()
        theirs.wait()


@pytest.mark.integration
def test_after_a_sigkill_of_the_harness_its_watchdog_sweeps_every_marked_process(run_id: str) -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", FAKE_HARNESS, run_id, ESCAPING_CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert harness.stdout is not None
    watchdog_pid = int(harness.stdout.readline())
    wait_until(
        lambda: len(marked_processes(run_id=run_id)) == 2, "the supervisor and its worker started", GONE_WITHIN_S
    )
    pids = [process.pid for process, _ in marked_processes(run_id=run_id)]
    harness.kill()
    harness.wait()
    wait_until(lambda: gone(pids), "every process of the killed harness's run stopped", GONE_WITHIN_S)
    wait_until(lambda: gone([watchdog_pid]), "the watchdog exited after its sweep", GONE_WITHIN_S)


def test_a_finished_run_tells_its_watchdog_and_nothing_registered_is_swept() -> None:
    # `watch` is the watchdog's loop: a run that finished leaves registered resources to their owner.
    assert watch("test-finished", owner_id(), [json.dumps({"kind": "docker"}) + "\n", '{"finished": true}\n']) == []
    lines = watch("test-crashed", owner_id(), [json.dumps({"kind": "nonsense"}) + "\n"])
    assert lines == ["run test-crashed: unknown resource kind 'nonsense'"]
    # What is not a leftover at all (no kind) is not one to remove.
    assert watch("test-crashed", owner_id(), ['{"cluster": "c"}\n', "[1]\n", "not json\n"]) == []


def test_each_registered_resource_is_swept_by_its_kinds_sweeper_and_a_failure_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(resource: Leftover, run_id: str) -> list[str]:
        raise RuntimeError("daemon gone")

    monkeypatch.setitem(cleanup._LEFTOVER_REMOVERS, "docker", unreachable)
    monkeypatch.setitem(
        cleanup._LEFTOVER_REMOVERS, "kubernetes", lambda resource, run_id: [f"deleted {resource.namespace}"]
    )
    resources = [
        json.dumps({"kind": "docker"}) + "\n",
        json.dumps({"kind": "kubernetes", "namespace": "ns-1", "from_a_newer_harness": 1}) + "\n",
    ]
    assert watch("test-crashed", owner_id(), resources) == [
        "run test-crashed: could not remove its docker leftovers: daemon gone",
        "run test-crashed: deleted ns-1",
    ]


# --------------------------------------------------------------------------- harness cleanup


# Exclusive: a `harness run` starting beside it would sweep its dead-owner process first.
@pytest.mark.integration
@pytest.mark.machine_wide
def test_cleanup_removes_what_dead_harnesses_left_and_spares_live_ones(run_id: str) -> None:
    orphan = subprocess.Popen(
        ["sleep", "120"], env={**os.environ, OWNER_ENV: dead_owner(), RUN_ENV: run_id}, start_new_session=True
    )
    alive = spawn(["sleep", "120"], run_id=run_id + "-live")
    # The cgroup of a run whose harness died before removing it (a real one: the test runs as root).
    limiter = CgroupCpuLimiter(run_id)
    group = limiter.create("replica-1", 0.5)
    try:
        assert group is not None and group.exists(), limiter.warnings
        lines = clean_up_dead_runs()
        assert f"run {run_id}: killed 1 process(es) of a harness that is gone" in lines
        assert f"run {run_id}: removed cgroup {limiter.run_group}" in lines
        assert not group.exists() and limiter.run_group is not None and not limiter.run_group.exists()
        orphan.wait(timeout=GONE_WITHIN_S)
        assert alive.poll() is None, "a live harness's process is never swept"
        assert clean_up_run(run_id + "-live", "someone-else") == [], "a sweep matches the owner too"
        assert alive.poll() is None
    finally:
        stop_tree(alive, grace_s=1)
        orphan.kill()
        limiter.cleanup()


# Exclusive: a `harness run` starting beside it would sweep its dead-owner process first.
@pytest.mark.integration
@pytest.mark.machine_wide
def test_harness_cleanup_command_says_what_it_removed_then_that_nothing_is_left(run_id: str) -> None:
    orphan = subprocess.Popen(
        ["sleep", "120"], env={**os.environ, OWNER_ENV: dead_owner(), RUN_ENV: run_id}, start_new_session=True
    )
    try:
        command = [sys.executable, "-m", "harness.cli", "cleanup", "--no-docker"]
        first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert first.returncode == 0, first.stderr
        assert f"run {run_id}: killed 1 process(es)" in first.stdout
        orphan.wait(timeout=GONE_WITHIN_S)
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert run_id not in second.stdout
    finally:
        if orphan.poll() is None:
            orphan.send_signal(signal.SIGKILL)
