"""Orchestrates one run: build -> deploy -> drive load -> collect -> analyse -> verdict -> reports.

Cleanup lives in one place (`RunResources.close`), reached on success, on failure and on Ctrl-C or
SIGTERM, so no replica, container or load-generator process outlives the run and every record
already collected stays in the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__, extras
from harness.analysis.timeline import latest_figures
from harness.build import LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, BuiltImage, build_service_image, build_tool_image
from harness.cleanup import sweep_dead
from harness.config import Scenario, dump_scenario
from harness.errors import ConfigError, DeployError, HarnessError, ReportError
from harness.exit_codes import ExitCode
from harness.faults import FaultInjector, fault_times
from harness.load.alone import describe
from harness.load.payloads import build_bodies
from harness.load.record_alone import record_alone
from harness.load.requests import ready_requests
from harness.load.runner import EndpointPublisher, LoadDriver, LocustProcess, check_user_locustfile
from harness.load.shape import stage_windows
from harness.local_autoscaler import LocalAutoscaler, check_supported
from harness.metrics.collector import MetricsCollector
from harness.model import (
    ClientInterval,
    CpuPlacement,
    Event,
    ImageBuilt,
    MachineInfo,
    RunEvent,
    RunMetadata,
    RunWarning,
    Verdict,
)
from harness.processes import RunWatchdog
from harness.report.progress import ProgressSnapshot
from harness.rundir import RunDirectory
from harness.targets.base import HasInClusterLoad, InjectsFaults, LeavesResources, Target
from harness.targets.cpu_placement import CgroupCpuLimiter, plan_cpu_placement
from harness.targets.registry import TargetContext, extras_needed, make_target, target_kind
from harness.targets.tls import context_for

if TYPE_CHECKING:
    from harness.metrics.exporter import HarnessExporter

# --------------------------------------------------------------------------- run identity and metadata


def new_run_id(scenario: Scenario, now: dt.datetime | None = None, suffix: str | None = None) -> str:
    """`<UTC second>-<scenario>-<6 random hex digits>`. The run id names the run directory and marks the run's
    processes, cgroups, containers and cluster objects, which its stop and sweeps remove: two runs of one
    scenario started in the same second (two CI jobs, two test workers) must not share it, or the first to
    end kills the other's load generator."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{scenario.name}-{suffix if suffix is not None else secrets.token_hex(3)}"


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


def run_metadata(scenario: Scenario, run_id: str) -> RunMetadata:
    """Versions, machine and source revision, so a result can be reproduced and compared fairly."""
    service_dir = scenario.service.path
    return RunMetadata(
        run_id=run_id,
        scenario=scenario.name,
        harness_version=__version__,
        git_commit=_git_commit(Path(__file__).parent),
        service_git_commit=_git_commit(service_dir) if service_dir is not None and service_dir.exists() else None,
        versions={
            name: _package_version(name)
            for name in ("bentoml", "locust", "prometheus-client", "kubernetes", "docker", "scikit-learn", "numpy")
        },
        python=platform.python_version(),
        machine=MachineInfo(
            hostname=platform.node(),
            platform=platform.platform(),
            cpus=os.cpu_count(),
            memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        ),
        target=scenario.target.kind,
        started_at=dt.datetime.now(dt.UTC).isoformat(),
    )


# --------------------------------------------------------------------------- the run


@dataclass
class RunOutcome:
    run_dir: Path
    verdict: Verdict | None
    exit_code: int
    interrupted: bool = False


@dataclass(frozen=True)
class RunImages:
    """What the build step hands to deployment: the image the replicas run and the in-cluster load generator's
    image, each None when the target needs none."""

    service: str | None = None
    loadgen: str | None = None


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


def preflight(scenario: Scenario) -> None:
    """Catch input mistakes, and a missing optional extra, before anything is deployed."""
    for extra in extras_needed(scenario):
        extras.require(extra, f"the {scenario.target.kind} target")
    in_cluster = target_kind(scenario).load_in_cluster(scenario)
    if scenario.requests is None and scenario.payload.source == "digits" and not in_cluster:
        # The load generator draws the bodies from scikit-learn's bundled images (the cluster's image has it).
        extras.require("digits", "payload.source 'digits' (the default payload)")
    target_kind(scenario).preflight(scenario)
    if target_kind(scenario).serves_service_dir and not scenario.service.project_dir.is_dir():
        raise ConfigError(f"service.path '{scenario.service.path}': no such directory (expected a BentoML project)")
    if scenario.payload.source == "jsonl":
        build_bodies("jsonl", file=scenario.payload.file, batch_rows=1, seed=0)
    context_for(scenario.target.urls, scenario.target.tls)  # names a target.tls file that cannot be read or used
    if scenario.load.locustfile is not None:
        if not scenario.load.locustfile.is_file():
            raise ConfigError(f"load.locustfile '{scenario.load.locustfile}': no such file")
        if in_cluster:
            raise ConfigError("load.locustfile: the in-cluster load generator cannot run it yet; use loadgen: host")
        check_user_locustfile(scenario.load.locustfile)
    if scenario.requests is not None:
        # Reads every body file and data set, fills every template and checks every ${NAME} is set.
        ready_requests(scenario.requests, os.environ)
        if in_cluster:
            raise ConfigError(
                "requests: the in-cluster load generator (target.kubernetes.loadgen: in-cluster) sends only "
                "payload to service.endpoint so far; use target.kubernetes.loadgen: host"
            )


class Run:
    """One run of a scenario on its target."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        progress: Callable[[ProgressSnapshot], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.run_id = scenario.output.run_id or new_run_id(scenario)
        # Absolute: the load generator and replicas run with other working directories.
        self.run_dir = RunDirectory((scenario.output.dir / self.run_id).resolve())
        self.progress = progress or (lambda snapshot: None)
        self.log = log or (lambda message: None)
        self.resources = RunResources()
        self.target: Target | None = None
        self.collector: MetricsCollector | None = None
        self.exporter: HarnessExporter | None = None
        self.test_start_s: float | None = None
        self.load_ended_s: float | None = None
        self.intervals: list[ClientInterval] = []
        self.requests_total = 0
        self.failures_total = 0
        # How many interval records the live view has shown: it is redrawn only when new ones arrive.
        self._shown_intervals = 0
        self.warnings: list[str] = []
        self.metadata = RunMetadata()

    def event(self, event: Event) -> None:
        self.run_dir.append(RunEvent(t_s=time.time(), detail=event))
        if isinstance(event, RunWarning):
            self.warnings.append(f"{event.source}: {event.error}")

    def _on_interval(self, record: ClientInterval) -> None:
        self.run_dir.append(record)
        self.intervals.append(record)
        self.requests_total += record.requests
        self.failures_total += record.failures
        if self.exporter is not None and record.failures:
            self.exporter.add_errors(record.failures)

    def execute(self) -> RunOutcome:
        """Run the scenario; always cleans up; returns the verdict (None if no data to judge)."""
        preflight(self.scenario)
        self.run_dir.create()
        self.run_dir.write_text("scenario.yaml", dump_scenario(self.scenario))
        self.metadata = run_metadata(self.scenario, self.run_id)
        self.run_dir.write_metadata(self.metadata)
        interrupted = False
        failure: HarnessError | None = None
        with sigterm_as_interrupt():
            try:
                self._build_deploy_and_drive()
            except KeyboardInterrupt:
                interrupted = True
                self.warnings.append("run interrupted (Ctrl-C or SIGTERM): partial data")
                self.log("interrupted: stopping replicas and the load generator")
            except HarnessError as error:
                failure = error
            finally:
                # A second Ctrl-C must not cut the cleanup short and leave replicas behind.
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    self.resources.close(lambda name, error: self.warnings.append(f"cleanup of {name} failed: {error}"))
                finally:
                    signal.signal(signal.SIGINT, previous)
                self.metadata = dataclasses.replace(
                    self.metadata,
                    ended_at=dt.datetime.now(dt.UTC).isoformat(),
                    interrupted=interrupted,
                    error=str(failure) if failure else None,
                    test_start_s=self.test_start_s,
                    load_ended_s=self.load_ended_s,
                    warnings=self.warnings,
                )
                try:
                    self.run_dir.write_metadata(self.metadata)
                except ReportError as error:
                    # A full disk: the first error is the one to report.
                    failure = failure or error
        verdict = None
        if self.test_start_s is not None and not isinstance(failure, ReportError):
            from harness.conclude import conclude_run

            verdict = conclude_run(self.run_dir, self.scenario)
            self._publish_verdict(verdict)
        self.run_dir.close()
        if failure is not None:
            raise failure
        if interrupted:
            return RunOutcome(self.run_dir.path, verdict, ExitCode.INTERRUPTED, interrupted=True)
        return RunOutcome(self.run_dir.path, verdict, verdict.exit_code if verdict else ExitCode.INCONCLUSIVE)

    def _publish_verdict(self, verdict: Verdict) -> None:
        from harness.report import write_reports

        write_reports(self.run_dir)
        if self.scenario.metrics.pushgateway_url:
            from harness.metrics.exporter import push_verdict

            push_verdict(
                self.scenario.metrics.pushgateway_url,
                "harness",
                self.run_id,
                verdict,
                scenario=self.scenario.name,
            )

    def _placement(self) -> CpuPlacement | None:
        """Where replicas and the load generator run, for targets whose replicas run on this machine."""
        scenario = self.scenario
        if not target_kind(scenario).replicas_on_this_machine:
            return None
        replicas = scenario.target.replicas
        if scenario.autoscaling is not None and scenario.autoscaling.enabled:
            replicas = scenario.autoscaling.max_replicas
        return plan_cpu_placement(
            sorted(os.sched_getaffinity(0)),
            replicas,
            scenario.resources.requests.cpu_cores,
            loadgen_cpus_wanted=scenario.load.processes,
            loadgen_cpus_given=scenario.load.cpus,
        )

    def _build(self) -> RunImages:
        """The images the target needs, by its kind's capabilities: the service's, unless the scenario names
        one, and the load generator's when the load runs in the cluster."""
        scenario = self.scenario
        kind = target_kind(scenario)
        base_image, ca_bundle = scenario.build.base_image, scenario.build.ca_bundle
        service = None
        if kind.named_image is not None:
            service = kind.named_image(scenario) or self._built(
                lambda: build_service_image(scenario.service, base_image, ca_bundle)
            )
        loadgen = None
        if kind.load_in_cluster(scenario):
            loadgen = self._built(
                lambda: build_tool_image(LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, base_image, ca_bundle)
            )
        return RunImages(service=service, loadgen=loadgen)

    def _built(self, build: Callable[[], BuiltImage]) -> str:
        """Run one build, record it as an event (the whole build's time, `bentoml build` included), return the tag."""
        started_s = time.time()
        image = build()
        self.event(ImageBuilt(image.tag, image.size_bytes, round(time.time() - started_s, 1), image.reused))
        return image.tag

    def _build_deploy_and_drive(self) -> None:
        scenario = self.scenario
        work_dir = self.run_dir.path / "work"
        (work_dir / "load").mkdir(parents=True, exist_ok=True)
        # What earlier runs left when their harness was killed goes first; this run's own leftovers, should
        # the harness die, are swept by its watchdog.
        for line in sweep_dead(docker=target_kind(scenario).uses_docker):
            self.log(f"cleanup: {line}")
        watchdog = RunWatchdog(self.run_id)
        self.resources.add("watchdog", watchdog.finish)

        images = self._build()

        placement = self._placement()
        self.metadata = dataclasses.replace(self.metadata, cpu_placement=placement)
        limiter: CgroupCpuLimiter | None = None
        # As the kubelet does: limits.cpu becomes a CFS quota, requests.cpu a relative CPU weight.
        quota_cores = scenario.resources.limits.cpu_cores
        request_cores = scenario.resources.requests.cpu_cores
        if target_kind(scenario).replicas_on_this_machine and (quota_cores is not None or request_cores is not None):
            limiter = CgroupCpuLimiter(self.run_id)
            self.resources.add("cpu limits", limiter.cleanup)

        def on_replica_started(replica_id: str, pid: int) -> None:
            if limiter is not None:
                limiter.limit(replica_id, pid, quota_cores, request_cores=request_cores)
                for warning in limiter.warnings:
                    if warning not in self.warnings:
                        self.warnings.append(warning)

        context = TargetContext(
            work_dir=work_dir / "replicas",
            on_event=self.event,
            run_id=self.run_id,
            image=images.service,
            replica_cpus=placement.replica_cpus if placement else None,
            on_replica_started=on_replica_started,
            register=watchdog.register,
        )
        target = make_target(scenario, context)
        self.target = target
        if isinstance(target, LeavesResources):
            watchdog.register(target.sweep_resource())
        self.resources.add("target", target.stop)
        initial = scenario.target.replicas
        autoscaling = scenario.autoscaling if scenario.autoscaling and scenario.autoscaling.enabled else None
        if autoscaling is not None:
            check_supported(autoscaling)
            initial = min(max(initial, autoscaling.min_replicas), autoscaling.max_replicas)
        if any(url.startswith("https:") for url in scenario.target.urls) and not scenario.target.tls.verify:
            self.warnings.append(
                "TLS verification was off (target.tls.verify: false): the service's certificate and host name were "
                "not checked"
            )
        self.log(f"starting {initial} replica(s) on the {target.name} target")
        started_s = time.time()
        target.start(initial)
        self.log(f"replicas ready in {time.time() - started_s:.1f} s")

        collector = MetricsCollector(
            target,
            self.run_dir,
            scenario.metrics.interval_s,
            scenario.service.metrics_path,
            cpu_request_cores=scenario.resources.requests.cpu_cores,
            endpoints={scenario.service.endpoint},
            ssl_context=context_for(scenario.target.urls, scenario.target.tls),
        )
        collector.start()
        self.collector = collector
        self.resources.add("metrics collector", collector.stop)

        if autoscaling is not None and not target.scales_itself:
            autoscaler = LocalAutoscaler(
                autoscaling,
                target,
                collector.latest,
                cpu_request_cores=scenario.resources.requests.cpu_cores,
                sample_interval_s=scenario.metrics.interval_s,
                on_event=self.event,
            )
            autoscaler.start()
            self.resources.add("autoscaler", autoscaler.stop)

        if scenario.metrics.exporter_port is not None:
            from harness.metrics.exporter import HarnessExporter

            exporter = HarnessExporter(self.run_id, scenario.name, port=scenario.metrics.exporter_port)
            port = exporter.start()
            self.exporter = exporter
            self.metadata = dataclasses.replace(self.metadata, exporter_url=exporter.url)
            self.log(f"harness metrics on http://127.0.0.1:{port}/metrics")
            self.resources.add("metrics exporter", exporter.stop)

        endpoints_file = work_dir / "endpoints.json"
        publisher = EndpointPublisher(
            lambda: [replica.base_url for replica in target.replicas() if replica.ready], endpoints_file
        )
        publisher.publish()
        publisher.start()
        self.resources.add("endpoint publisher", publisher.stop)

        alone_answers = self._record_answers_alone(target)
        locust: LoadDriver
        if images.loadgen is not None and isinstance(target, HasInClusterLoad):
            locust = target.in_cluster_load(
                images.loadgen, work_dir / "load", self._on_interval, self.run_dir.file("locust.json")
            )
        else:
            locust = LocustProcess(
                scenario,
                work_dir / "load",
                endpoints_file,
                self._on_interval,
                json_file=self.run_dir.file("locust.json"),
                log_file=work_dir / "load" / "locust.log",
                cpus=placement.loadgen_cpus if placement else None,
                run_id=self.run_id,
                alone_answers=alone_answers,
            )
        self.resources.add("load generator", locust.stop)
        planned_faults = fault_times(scenario.stages)
        injector: FaultInjector | None = None
        if planned_faults and isinstance(target, InjectsFaults):
            injector = FaultInjector(target, target.replicas, planned_faults, self.event)
            self.resources.add("fault injector", injector.stop)
        # The live view's percentiles need numpy: imported now rather than at its first update, so that the
        # import's CPU does not compete with the replicas and the load generator in the first stage.
        import numpy  # noqa: F401

        self.log(f"driving load for {locust.planned_duration_s:.0f} s")
        locust.start()

        def on_poll() -> None:
            # A record that could not be written (a full disk) ends the run: exit 2, the data so far kept.
            if self.run_dir.failure is not None:
                raise self.run_dir.failure
            if collector.failure is not None:
                raise collector.failure
            if self.test_start_s is None and locust.tail.test_start_s is not None:
                # The stages as planned, as soon as the load starts: a run whose harness is killed can
                # still be judged from what it wrote (`harness report`).
                self.test_start_s = locust.tail.test_start_s
                self.run_dir.write_json("stages.json", stage_windows(scenario, self.test_start_s))
                if injector is not None:
                    injector.start(self.test_start_s)
            self._update_live(locust)

        try:
            locust.wait(on_poll=on_poll)
        finally:
            self.test_start_s = locust.tail.test_start_s
            self.load_ended_s = time.time()
            for overhead in locust.tail.overheads:
                self.run_dir.append(overhead)
            if self.test_start_s is not None:
                windows = stage_windows(scenario, self.test_start_s, self.load_ended_s)
                self.run_dir.write_json("stages.json", windows)

    def _record_answers_alone(self, target: Target) -> dict[str, dict[str, Any]]:
        """Before the load: the answers of the requests with check.same_as_alone, each body sent alone."""
        requests = [r for r in ready_requests(self.scenario.requests or [], os.environ) if r.check.same_as_alone]
        if not requests:
            return {}
        base_url = next((replica.base_url for replica in target.replicas() if replica.ready), None)
        if base_url is None:
            raise DeployError("no ready replica to send the answers alone to (check.same_as_alone)")
        context = context_for([base_url], self.scenario.target.tls)
        recorded = record_alone(requests, base_url, self.scenario.load.request_timeout_s, context)
        for name, alone in recorded.items():
            line = describe(name, alone)
            self.log(line)
            if alone.unstable or alone.unanswered:
                self.warnings.append(line)
        return {name: alone.answers for name, alone in recorded.items()}

    def _update_live(self, locust: LoadDriver) -> None:
        """Feed live progress and the harness's own metrics from the latest interval, when one arrived."""
        start_s = locust.tail.test_start_s
        if start_s is None or len(self.intervals) == self._shown_intervals:
            return
        self._shown_intervals = len(self.intervals)
        now_s = time.time()
        latest = latest_figures(self.intervals)
        snapshot = self.collector.latest() if self.collector else None
        stage_names = [stage.name for stage in self.scenario.stages]
        self.progress(
            ProgressSnapshot(
                stage=latest.stage,
                stage_index=stage_names.index(latest.stage) if latest.stage in stage_names else 0,
                stage_count=len(stage_names),
                elapsed_s=now_s - start_s,
                total_s=self.scenario.duration_s,
                rps=latest.achieved_rps,
                p95_s=latest.p95_s,
                ready_replicas=snapshot.ready_replicas if snapshot else None,
                desired_replicas=snapshot.desired_replicas if snapshot else None,
                errors=self.failures_total,
                requests=self.requests_total,
            )
        )
        if self.exporter is not None:
            self.exporter.set_achieved_rps(latest.achieved_rps)
            self.exporter.set_offered_rps(latest.offered_rps)
            self.exporter.set_latency_s(latest.p50_s, latest.p95_s, latest.p99_s)
            if snapshot is not None:
                self.exporter.set_replicas(snapshot.desired_replicas, snapshot.ready_replicas)
