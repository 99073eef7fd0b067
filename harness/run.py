"""Orchestrates one run: deploy -> drive load -> collect -> analyse -> verdict -> reports.

Cleanup lives in one place (`RunResources.close`), reached on success, on failure and on Ctrl-C or
SIGTERM, so no replica, container or load-generator process outlives the run and every record
already collected stays in the run directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import __version__
from harness.config import Scenario
from harness.errors import ConfigError, DeployError, HarnessError
from harness.load.payloads import build_bodies
from harness.load.runner import LocustProcess, write_endpoints
from harness.model import ClientInterval, RunEvent, StageWindow, Verdict
from harness.rundir import RunDirectory
from harness.targets.base import Target

TargetFactory = Callable[[Scenario, Path, Callable[[str, dict[str, Any]], None]], Target]


def _local(scenario: Scenario, work_dir: Path, on_event: Callable[[str, dict[str, Any]], None]) -> Target:
    from harness.targets.local import LocalTarget

    return LocalTarget(scenario, work_dir, on_event=on_event)


def _external(scenario: Scenario, work_dir: Path, on_event: Callable[[str, dict[str, Any]], None]) -> Target:
    from harness.targets.external import ExternalTarget

    return ExternalTarget(scenario)


def _docker(scenario: Scenario, work_dir: Path, on_event: Callable[[str, dict[str, Any]], None]) -> Target:
    from harness.targets.docker import DockerTarget  # type: ignore[import-not-found,unused-ignore]

    return DockerTarget(scenario, work_dir, on_event=on_event)  # type: ignore[no-any-return,unused-ignore]


def _kubernetes(scenario: Scenario, work_dir: Path, on_event: Callable[[str, dict[str, Any]], None]) -> Target:
    from harness.targets.kubernetes import KubernetesTarget  # type: ignore[import-not-found,unused-ignore]

    return KubernetesTarget(scenario, work_dir, on_event=on_event)  # type: ignore[no-any-return,unused-ignore]


TARGETS: dict[str, TargetFactory] = {
    "local": _local,
    "external": _external,
    "docker": _docker,
    "kubernetes": _kubernetes,
}


def make_target(scenario: Scenario, work_dir: Path, on_event: Callable[[str, dict[str, Any]], None]) -> Target:
    """The target named by the scenario; an unknown name lists the valid ones."""
    factory = TARGETS.get(scenario.target.kind)
    if factory is None:
        raise ConfigError(f"target.kind '{scenario.target.kind}' is unknown (expected one of: {', '.join(TARGETS)})")
    return factory(scenario, work_dir, on_event)


# --------------------------------------------------------------------------- run identity and metadata


def new_run_id(scenario: Scenario, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{scenario.name}"


def _git_commit(cwd: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run_metadata(scenario: Scenario, run_id: str) -> dict[str, Any]:
    """Versions, machine and source revision, so a result can be reproduced and compared fairly."""
    return {
        "run_id": run_id,
        "scenario": scenario.name,
        "harness_version": __version__,
        "git_commit": _git_commit(Path(__file__).parent),
        "service_git_commit": _git_commit(scenario.service.path) if scenario.service.path.exists() else None,
        "versions": {
            name: _package_version(name)
            for name in ("bentoml", "locust", "prometheus-client", "kubernetes", "docker", "scikit-learn", "numpy")
        },
        "python": platform.python_version(),
        "machine": {
            "hostname": platform.node(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        },
        "target": scenario.target.kind,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }


# --------------------------------------------------------------------------- the run


@dataclass
class RunOutcome:
    run_dir: Path
    verdict: Verdict | None
    exit_code: int
    interrupted: bool = False


@dataclass
class RunResources:
    """Everything a run starts, stopped in reverse order by `close` whatever happened."""

    closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, name: str, closer: Callable[[], None]) -> None:
        self.closers.append((name, closer))

    def close(self, on_error: Callable[[str, BaseException], None]) -> None:
        while self.closers:
            name, closer = self.closers.pop()
            try:
                closer()
            except BaseException as error:  # cleanup must go on through every resource
                on_error(name, error)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so the same cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stage_windows(scenario: Scenario, test_start_s: float, ended_s: float | None = None) -> list[StageWindow]:
    """Stage windows on the wall clock from the load generator's test start; cut short at `ended_s`."""
    windows = []
    start_s = test_start_s
    for stage in scenario.stages:
        end_s = start_s + stage.duration_s
        if ended_s is not None and start_s >= ended_s:
            break
        windows.append(
            StageWindow(
                name=stage.name,
                start_s=start_s,
                end_s=min(end_s, ended_s) if ended_s is not None else end_s,
                judged=stage.judged,
                users=stage.users,
                arrival_rate_rps=stage.arrival_rate_rps,
            )
        )
        start_s = end_s
    return windows


def preflight(scenario: Scenario) -> None:
    """Catch input mistakes before anything is deployed."""
    if scenario.target.kind in ("local", "docker") and not scenario.service.path.is_dir():
        raise ConfigError(f"service.path '{scenario.service.path}': no such directory (expected a BentoML project)")
    if scenario.payload.source == "jsonl":
        build_bodies("jsonl", file=scenario.payload.file, batch_rows=1, seed=0)


class Run:
    """One run of a scenario on its target."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.run_id = scenario.output.run_id or new_run_id(scenario)
        self.run_dir = RunDirectory(scenario.output.dir / self.run_id)
        self.progress = progress or (lambda snapshot: None)
        self.log = log or (lambda message: None)
        self.resources = RunResources()
        self.target: Target | None = None
        self.test_start_s: float | None = None
        self.load_ended_s: float | None = None
        self.intervals: list[ClientInterval] = []
        self.warnings: list[str] = []

    def event(self, kind: str, detail: dict[str, Any]) -> None:
        self.run_dir.append(RunEvent(t_s=time.time(), kind=kind, detail=detail))

    def _on_interval(self, record: ClientInterval) -> None:
        self.run_dir.append(record)
        self.intervals.append(record)

    def execute(self) -> RunOutcome:
        """Run the scenario; always cleans up; returns the verdict (None if no data to judge)."""
        preflight(self.scenario)
        self.run_dir.create()
        (self.run_dir.path / "scenario.yaml").write_text(
            yaml.safe_dump(self.scenario.model_dump(mode="json", by_alias=True), sort_keys=False)
        )
        metadata = run_metadata(self.scenario, self.run_id)
        self.run_dir.write_json("metadata.json", metadata)
        interrupted = False
        failure: HarnessError | None = None
        with sigterm_as_interrupt():
            try:
                self._deploy_and_drive()
            except KeyboardInterrupt:
                interrupted = True
                self.warnings.append("run interrupted (Ctrl-C or SIGTERM): partial data")
                self.log("interrupted: stopping replicas and the load generator")
            except HarnessError as error:
                failure = error
            finally:
                self.resources.close(lambda name, error: self.warnings.append(f"cleanup of {name} failed: {error}"))
                metadata.update(
                    ended_at=dt.datetime.now(dt.UTC).isoformat(),
                    interrupted=interrupted,
                    error=str(failure) if failure else None,
                    test_start_s=self.test_start_s,
                    load_ended_s=self.load_ended_s,
                    warnings=self.warnings,
                )
                self.run_dir.write_json("metadata.json", metadata)
        verdict = self._conclude() if self.test_start_s is not None else None
        self.run_dir.close()
        if failure is not None:
            raise failure
        if interrupted:
            return RunOutcome(self.run_dir.path, verdict, 130, interrupted=True)
        return RunOutcome(self.run_dir.path, verdict, verdict.exit_code if verdict else 3)

    def _deploy_and_drive(self) -> None:
        scenario = self.scenario
        work_dir = self.run_dir.path / "work"
        (work_dir / "load").mkdir(parents=True, exist_ok=True)
        target = make_target(scenario, work_dir / "replicas", self.event)
        self.target = target
        self.resources.add("target", target.stop)
        initial = scenario.target.replicas
        if scenario.autoscaling is not None and scenario.autoscaling.enabled:
            initial = min(max(initial, scenario.autoscaling.min_replicas), scenario.autoscaling.max_replicas)
        self.log(f"starting {initial} replica(s) on the {target.name} target")
        started_s = time.time()
        target.start(initial)
        self.log(f"replicas ready in {time.time() - started_s:.1f} s")

        endpoints_file = work_dir / "endpoints.json"
        publisher = EndpointPublisher(target, endpoints_file)
        publisher.publish()
        publisher.start()
        self.resources.add("endpoint publisher", publisher.stop)

        locust = LocustProcess(
            scenario,
            work_dir / "load",
            endpoints_file,
            self._on_interval,
            json_file=self.run_dir.file("locust.json"),
            log_file=work_dir / "load" / "locust.log",
        )
        self.resources.add("load generator", locust.stop)
        self.log(f"driving load for {locust.planned_duration_s:.0f} s")
        locust.start()
        try:
            locust.wait(should_stop=lambda: self._watch_progress(locust))
        finally:
            self.test_start_s = locust.tail.test_start_s
            self.load_ended_s = time.time()
            if self.test_start_s is not None:
                windows = stage_windows(scenario, self.test_start_s, self.load_ended_s)
                self.run_dir.write_json("stages.json", windows)

    def _watch_progress(self, locust: LocustProcess) -> bool:
        start = locust.tail.test_start_s
        if start is not None and self.intervals:
            last = self.intervals[-1]
            self.progress({"elapsed_s": time.time() - start, "stage": last.stage, "total_s": self.scenario.duration_s})
        if self.target is not None:
            for replica in self.target.replicas():
                if replica.crashed:
                    pass  # recorded as an event by the target; the stage becomes INCONCLUSIVE
        return False

    def _conclude(self) -> Verdict | None:
        from harness.conclude import conclude_run

        return conclude_run(self.run_dir, self.scenario, self.warnings)


class EndpointPublisher:
    """Keeps the load generator's endpoints file equal to the ready replicas' base URLs."""

    def __init__(self, target: Target, path: Path, interval_s: float = 0.25) -> None:
        self.target = target
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="endpoint-publisher", daemon=True)
        self._last: list[str] | None = None

    def publish(self) -> None:
        urls = sorted(replica.base_url for replica in self.target.replicas() if replica.ready)
        if urls != self._last:
            if not urls and self._last is None:
                raise DeployError("no ready replica to send load to")
            write_endpoints(self.path, urls)
            self._last = urls

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.publish()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def read_json_file(path: Path) -> Any:
    return json.loads(path.read_text())
