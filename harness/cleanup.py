"""Cleaning up what a run left behind: its marked processes, its cgroups, its containers, its cluster objects.

`clean_up_run` is what a run's watchdog (harness.processes.RunWatchdog) does once the harness is gone;
`clean_up_dead_runs` is `harness cleanup`, and what every `harness run` does first: everything bearing the mark of a
harness that no longer runs on this machine. What belongs to a live harness, or to another machine, is
never touched (harness.processes.owner_alive).

Run as `python -m harness.cleanup --watch RUN_ID OWNER` it is the watchdog: it reads resource lines from
stdin until the harness closes the pipe, then cleans up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from harness.exit_codes import ExitCode
from harness.model import Leftover
from harness.processes import OWNER_ENV, RUN_ENV, kill_all, marked_processes, owner_alive
from harness.rundir import leftover_from_json
from harness.targets.cpu_placement import CGROUP_PREFIX, remove_cgroup

CGROUP_ROOT = Path("/sys/fs/cgroup")
WATCH_FLAG = "--watch"


def _log(lines: list[str], on_line: Callable[[str], None] | None, line: str) -> None:
    lines.append(line)
    if on_line is not None:
        on_line(line)


# --------------------------------------------------------------------------- cgroups


def _cgroup_mounts(root: Path) -> list[Path]:
    """Where harness cgroups can live: the unified hierarchy, or every v1 controller mount."""
    if (root / "cgroup.controllers").exists():
        return [root]
    with contextlib.suppress(OSError):
        return [path for path in root.iterdir() if path.is_dir() and not path.is_symlink()]
    return []


def _remove_cgroup(group: Path) -> bool:
    """Kill what is still inside (nothing is moved out), child groups first; True when it is gone."""
    return remove_cgroup(group, _kill) is None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _live_watched_runs() -> set[str]:
    """Run ids whose watchdog still runs: their harness is alive, or their clean-up is under way."""
    runs = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if WATCH_FLAG in cmdline and "harness.cleanup" in cmdline:
            index = cmdline.index(WATCH_FLAG)
            if index + 1 < len(cmdline):
                runs.add(cmdline[index + 1])
    return runs


def harness_cgroups(root: Path = CGROUP_ROOT) -> dict[str, list[Path]]:
    """The harness's per-run cgroups (`harness-<run id>` under each controller), by run id."""
    found: dict[str, list[Path]] = {}
    for mount in _cgroup_mounts(root):
        with contextlib.suppress(OSError):
            for group in mount.iterdir():
                if group.is_dir() and group.name.startswith(CGROUP_PREFIX):
                    found.setdefault(group.name.removeprefix(CGROUP_PREFIX), []).append(group)
    return found


def _cgroup_has_processes(group: Path) -> bool:
    with contextlib.suppress(OSError):
        for procs in group.rglob("cgroup.procs"):
            if procs.read_text().strip():
                return True
    return False


# --------------------------------------------------------------------------- clean-up


def clean_up_run(
    run_id: str,
    owner: str,
    resources: Iterable[Leftover] = (),
    *,
    cgroup_root: Path = CGROUP_ROOT,
    on_line: Callable[[str], None] | None = None,
) -> list[str]:
    """Remove everything of one run: processes bearing its mark, its cgroups, then the registered resources
    (containers, cluster objects). Returns one line per thing removed or left."""
    lines: list[str] = []
    processes = [process for process, _ in marked_processes(owner=owner, run_id=run_id)]
    if processes:
        kill_all(processes)
        _log(lines, on_line, f"run {run_id}: killed {len(processes)} process(es)")
    for group in harness_cgroups(cgroup_root).get(run_id, []):
        if _remove_cgroup(group):
            _log(lines, on_line, f"run {run_id}: removed cgroup {group}")
        else:
            _log(lines, on_line, f"run {run_id}: could not remove cgroup {group}")
    for resource in resources:
        for line in _remove_leftover(run_id, resource):
            _log(lines, on_line, line)
    return lines


def _remove_containers(resource: Leftover, run_id: str) -> list[str]:
    from harness.targets.docker import docker_client, remove_run_containers

    return [f"removed container {name}" for name in remove_run_containers(docker_client(), run_id)]


def _delete_cluster_objects(resource: Leftover, run_id: str) -> list[str]:
    from harness.targets.kubernetes import delete_run_objects_of

    return delete_run_objects_of(resource, run_id)


def _delete_kind_cluster(resource: Leftover, run_id: str) -> list[str]:
    from harness.targets.kind import delete_cluster_of

    return delete_cluster_of(resource, run_id)


# A target's `leftover_resource()` kind -> what removes it (the targets' modules are imported only when needed).
_LEFTOVER_REMOVERS: dict[str, Callable[[Leftover, str], list[str]]] = {
    "docker": _remove_containers,
    "kubernetes": _delete_cluster_objects,
    "kind": _delete_kind_cluster,
}


def _remove_leftover(run_id: str, resource: Leftover) -> list[str]:
    kind = resource.kind
    remove = _LEFTOVER_REMOVERS.get(kind)
    if remove is None:
        return [f"run {run_id}: unknown resource kind {kind!r}"]
    try:
        return [f"run {run_id}: {line}" for line in remove(resource, run_id)]
    except Exception as error:  # a clean-up reports what it could not do and goes on
        return [f"run {run_id}: could not remove its {kind} leftovers: {error}"]


def clean_up_dead_runs(
    *,
    cgroup_root: Path = CGROUP_ROOT,
    docker: bool = False,
    kubeconfig: Path | None = None,
    namespace: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> list[str]:
    """Everything bearing the mark of a harness of this machine that no longer runs: processes, then the
    cgroups of runs without a live watchdog that hold no process, then (`docker`) containers and (with a
    `kubeconfig`) the cluster's namespaces and objects, with every harness object whose expiry has passed, whoever
    made it (in `namespace` only, when given)."""
    lines: list[str] = []
    dead: dict[str, list[psutil.Process]] = {}
    for process, mark in marked_processes():
        if not owner_alive(mark[OWNER_ENV]):
            dead.setdefault(mark[RUN_ENV], []).append(process)
    for run_id, processes in sorted(dead.items()):
        kill_all(processes)
        _log(lines, on_line, f"run {run_id}: killed {len(processes)} process(es) of a harness that is gone")
    watched = _live_watched_runs()
    for run_id, groups in sorted(harness_cgroups(cgroup_root).items()):
        if run_id in watched or any(_cgroup_has_processes(group) for group in groups):
            continue
        for group in groups:
            if _remove_cgroup(group):
                _log(lines, on_line, f"run {run_id}: removed cgroup {group}")
    # kind clusters a dead harness created, should its watchdog have died too (the owner records are files).
    from harness.targets.kind import delete_cluster_of, leaked_clusters

    for run_id, leaked in leaked_clusters(watched):
        for line in delete_cluster_of(leaked, run_id):
            _log(lines, on_line, f"run {run_id}: {line} (a harness that is gone)")
    if docker:
        from harness.targets.docker import docker_client, remove_containers_of_dead_owners

        for name in remove_containers_of_dead_owners(docker_client()):
            _log(lines, on_line, f"removed container {name} of a harness that is gone")
    if kubeconfig is not None:
        import time

        from harness.targets.kubernetes import delete_expired_objects, delete_objects_of_dead_owners
        from harness.targets.kubernetes_api import ClientKubernetesApi

        api = ClientKubernetesApi.connect(kubeconfig)
        for line in delete_expired_objects(api, time.time(), namespace):
            _log(lines, on_line, f"cluster: {line}")
        if namespace is None:
            for line in delete_objects_of_dead_owners(api):
                _log(lines, on_line, f"cluster: {line} (a harness that is gone)")
    return lines


# --------------------------------------------------------------------------- the watchdog's main


def watch(run_id: str, owner: str, stream: Iterable[str]) -> list[str]:
    """Read resource lines until the harness closes the pipe; clean up the run unless it finished cleanly
    (then only its processes and cgroups, in case a worker escaped)."""
    resources: list[Leftover] = []
    finished = False
    for line in stream:
        with contextlib.suppress(json.JSONDecodeError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("finished"):
                finished = True
            elif (leftover := leftover_from_json(message)) is not None:
                resources.append(leftover)
    return clean_up_run(run_id, owner, [] if finished else resources)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != WATCH_FLAG:
        print("usage: python -m harness.cleanup --watch RUN_ID OWNER", file=sys.stderr)
        return ExitCode.BAD_INPUT
    watch(argv[1], argv[2], sys.stdin)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
