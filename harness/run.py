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

from harness import __version__
from harness.build import LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, BuiltImage, build_service_image, build_tool_image
from harness.cleanup import clean_up_dead_runs
from harness.config import Scenario, dump_scenario
from harness.errors import DeployError, HarnessError, ReportError
from harness.exit_codes import ExitCode
from harness.faults import FaultInjector, fault_times
from harness.live import LiveView
from harness.load.plan import build_load_plan
from harness.load.reference_answers import describe
from harness.load.reference_recording import record_reference_answers
from harness.load.requests import ready_requests
from harness.load.runner import EndpointPublisher, LoadDriver, LocustProcess
from harness.load.shape import stage_windows
from harness.local_autoscaler import LocalAutoscaler
from harness.metrics.collector import MetricsCollector
from harness.model import (
    ClientInterval,
    CpuPlacement,
    Event,
    ImageBuilt,
    ImagePushed,
    MachineInfo,
    RunEvent,
    RunMetadata,
    RunWarning,
    Verdict,
)
from harness.preflight import preflight, tls_warnings
from harness.processes import RunWatchdog
from harness.push import push_image
from harness.report.progress import ProgressSnapshot
from harness.rundir import RunDirectory
from harness.targets.base import InjectsFaults, LeavesResources, Target
from harness.targets.cpu_placement import CgroupCpuLimiter, plan_cpu_placement
from harness.targets.registry import TargetContext, check_infrastructure, make_target, target_kind
from harness.tls import context_for

if TYPE_CHECKING:
    pass

# --------------------------------------------------------------------------- run identity and metadata


def new_run_id(scenario: Scenario, now: dt.datetime | None = None, suffix: str | None = None) -> str:
    """`<UTC second>-<scenario>-<6 random hex digits>`. The run id names the run directory and marks the run's
    processes, cgroups, containers and cluster objects, which its stop and clean-ups remove: two runs of one
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
        self.log = log or (lambda message: None)
        self.resources = RunResources()
        self.live = LiveView(scenario, progress or (lambda snapshot: None))
        self.watchdog: RunWatchdog | None = None
        self.injector: FaultInjector | None = None
        self.loadgen_cpus: tuple[int, ...] | None = None
        self.test_start_s: float | None = None
        self.load_ended_s: float | None = None
        self.warnings: list[str] = []
        self.metadata = RunMetadata()

    def event(self, event: Event) -> None:
        self.run_dir.append(RunEvent(t_s=time.time(), detail=event))
        if isinstance(event, RunWarning):
            self.warnings.append(f"{event.source}: {event.error}")

    def _on_interval(self, record: ClientInterval) -> None:
        self.run_dir.append(record)
        self.live.add(record)

    def execute(self) -> RunOutcome:
        """Run the scenario; always cleans up; returns the verdict (None if no data to judge)."""
        preflight(self.scenario)
        self.warnings.extend(tls_warnings(self.scenario))
        # Rights and APIs the target's infrastructure must grant, asked before anything is built or created.
        for warning in check_infrastructure(self.scenario):
            self.warnings.append(warning)
            self.log(f"warning: {warning}")
        self.run_dir.create()
        self.run_dir.write_scenario(dump_scenario(self.scenario))
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
        one, and the load generator's when the load runs in the cluster; pushed to the target's registry, when it
        has one, and then named by digest."""
        scenario = self.scenario
        kind = target_kind(scenario)
        base_image, ca_bundle, platform = scenario.build.base_image, scenario.build.ca_bundle, scenario.build.platform
        service = None
        if kind.named_image is not None:
            service = kind.named_image(scenario) or self._built(
                lambda: build_service_image(scenario.service, base_image, ca_bundle, platform=platform)
            )
        loadgen = None
        if kind.load_in_cluster(scenario):
            loadgen = self._built(
                lambda: build_tool_image(
                    LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, base_image, ca_bundle, platform=platform
                )
            )
        registry = kind.image_registry(scenario)
        if registry is not None:
            service, loadgen = (self._pushed(image, registry) if image else None for image in (service, loadgen))
        return RunImages(service=service, loadgen=loadgen)

    def _pushed(self, image: str, registry: str) -> str:
        """Push one image to the registry, record it as an event, return its reference by digest."""
        pushed = push_image(image, registry)
        self.event(ImagePushed(pushed.local, pushed.reference, round(pushed.push_s, 1)))
        self.log(f"pushed {image} as {pushed.reference}")
        return pushed.reference

    def _built(self, build: Callable[[], BuiltImage]) -> str:
        """Run one build, record it as an event (the whole build's time, `bentoml build` included), return the tag."""
        started_s = time.time()
        image = build()
        self.event(ImageBuilt(image.tag, image.size_bytes, round(time.time() - started_s, 1), image.reused))
        return image.tag

    def _build_deploy_and_drive(self) -> None:
        """The pipeline: clear what dead runs left, build, deploy, collect, drive the load."""
        work_dir = self._prepare()
        images = self._build()
        target = self._deploy(images, work_dir / "replicas")
        collector = self._collect(target)
        driver = self._load_driver(target, images, work_dir)
        self._drive(driver, collector)

    def _prepare(self) -> Path:
        """What earlier runs left when their harness was killed goes first; this run's own leftovers, should the
        harness die, are removed by its watchdog. Returns the run's work directory."""
        work_dir = self.run_dir.path / "work"
        (work_dir / "load").mkdir(parents=True, exist_ok=True)
        for line in clean_up_dead_runs(docker=target_kind(self.scenario).uses_docker):
            self.log(f"cleanup: {line}")
        self.watchdog = RunWatchdog(self.run_id)
        self.resources.add("watchdog", self.watchdog.finish)
        return work_dir

    def _deploy(self, images: RunImages, work_dir: Path) -> Target:
        """Start the target's initial replicas (CPU placement and limits where they run on this machine)."""
        scenario = self.scenario
        placement = self._placement()
        self.metadata = dataclasses.replace(self.metadata, cpu_placement=placement)
        self.loadgen_cpus = placement.loadgen_cpus if placement else None
        context = TargetContext(
            work_dir=work_dir,
            on_event=self.event,
            run_id=self.run_id,
            image=images.service,
            replica_cpus=placement.replica_cpus if placement else None,
            on_replica_started=self._replica_cpu_limits(),
            register=self.watchdog.register if self.watchdog is not None else None,
        )
        target = make_target(scenario, context)
        if isinstance(target, LeavesResources) and self.watchdog is not None:
            self.watchdog.register(target.leftover_resource())
        self.resources.add("target", target.stop)
        initial = scenario.target.replicas
        autoscaling = scenario.autoscaling
        if autoscaling is not None and autoscaling.enabled:
            initial = min(max(initial, autoscaling.min_replicas), autoscaling.max_replicas)
        self.log(f"starting {initial} replica(s) on the {target.name} target")
        started_s = time.time()
        target.start(initial)
        self.log(f"replicas ready in {time.time() - started_s:.1f} s")
        return target

    def _replica_cpu_limits(self) -> Callable[[str, int], None] | None:
        """As the kubelet does for replicas on this machine: limits.cpu becomes a CFS quota, requests.cpu a relative
        CPU weight, applied to each replica as it starts; None when the scenario sets neither."""
        quota_cores = self.scenario.resources.limits.cpu_cores
        request_cores = self.scenario.resources.requests.cpu_cores
        if not target_kind(self.scenario).replicas_on_this_machine or (quota_cores is None and request_cores is None):
            return None
        limiter = CgroupCpuLimiter(self.run_id)
        self.resources.add("cpu limits", limiter.cleanup)

        def on_replica_started(replica_id: str, pid: int) -> None:
            limiter.limit(replica_id, pid, quota_cores, request_cores=request_cores)
            for warning in limiter.warnings:
                if warning not in self.warnings:
                    self.warnings.append(warning)

        return on_replica_started

    def _collect(self, target: Target) -> MetricsCollector:
        """Start collecting the replicas' metrics, the local autoscaler where the target does not scale itself,
        and the harness's own exporter when asked for."""
        scenario = self.scenario
        # Before the collector, so that it stops after it and sends its last samples.
        if scenario.metrics.remote_write_url:
            from harness.metrics.remote_write import RemoteWriter

            writer = RemoteWriter(
                scenario.metrics.remote_write_url,
                {"run_id": self.run_id, "scenario": scenario.name},
                interval_s=scenario.metrics.remote_write_interval_s,
                on_warning=lambda message: self.event(RunWarning("remote write", message)),
            )
            writer.start()
            self.run_dir.observe(writer.add)
            self.resources.add("remote write", writer.close)
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
        self.resources.add("metrics collector", collector.stop)
        autoscaling = scenario.autoscaling
        if autoscaling is not None and autoscaling.enabled and not target.scales_itself:
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
            self.live.exporter = exporter
            self.metadata = dataclasses.replace(self.metadata, exporter_url=exporter.url)
            self.log(f"harness metrics on http://127.0.0.1:{port}/metrics")
            self.resources.add("metrics exporter", exporter.stop)
        return collector

    def _load_driver(self, target: Target, images: RunImages, work_dir: Path) -> LoadDriver:
        """The load generator for the plan, on this machine or in the cluster, fed the ready replicas; and the
        stages' faults, injected once the load starts."""
        scenario = self.scenario
        endpoints_file = work_dir / "endpoints.json"
        publisher = EndpointPublisher(
            lambda: [replica.base_url for replica in target.replicas() if replica.ready], endpoints_file
        )
        publisher.publish()
        publisher.start()
        self.resources.add("endpoint publisher", publisher.stop)
        plan = build_load_plan(
            scenario,
            endpoints_file=endpoints_file,
            intervals_dir=work_dir / "load" / "intervals",
            alone_answers=self._record_answers_alone(target),
        )
        driver: LoadDriver
        if images.loadgen is not None:
            from harness.load.in_cluster import InClusterLoad, LoadgenCluster

            assert isinstance(target, LoadgenCluster), "load_in_cluster is a capability of the kubernetes target"
            driver = InClusterLoad(
                target,
                plan,
                work_dir / "load",
                self._on_interval,
                image=images.loadgen,
                json_file=self.run_dir.file("locust.json"),
                workers=scenario.target.kubernetes.loadgen_workers or scenario.load.processes,
                pods=scenario.target.kubernetes.loadgen_pods,
                pull_secrets=scenario.target.kubernetes.image_pull_secrets,
            )
        else:
            driver = LocustProcess(
                plan,
                work_dir / "load",
                self._on_interval,
                json_file=self.run_dir.file("locust.json"),
                log_file=work_dir / "load" / "locust.log",
                cpus=self.loadgen_cpus,
                run_id=self.run_id,
            )
        self.resources.add("load generator", driver.stop)
        planned_faults = fault_times(scenario.stages)
        if planned_faults and isinstance(target, InjectsFaults):
            self.injector = FaultInjector(target, target.replicas, planned_faults, self.event)
            self.resources.add("fault injector", self.injector.stop)
        return driver

    def _drive(self, driver: LoadDriver, collector: MetricsCollector) -> None:
        """Run the load to its end, writing the stages as they ran; a record that cannot be written or a broken
        collector ends the run."""
        scenario = self.scenario
        # The live view's percentiles need numpy: imported now rather than at its first update, so that the
        # import's CPU does not compete with the replicas and the load generator in the first stage.
        import numpy  # noqa: F401

        self.log(f"driving load for {driver.planned_duration_s:.0f} s")
        driver.start()

        def on_poll() -> None:
            # A record that could not be written (a full disk) ends the run: exit 2, the data so far kept.
            if self.run_dir.failure is not None:
                raise self.run_dir.failure
            if collector.failure is not None:
                raise collector.failure
            if self.test_start_s is None and driver.tail.test_start_s is not None:
                # The stages as planned, as soon as the load starts: a run whose harness is killed can
                # still be judged from what it wrote (`harness report`).
                self.test_start_s = driver.tail.test_start_s
                self.run_dir.write_json("stages.json", stage_windows(scenario, self.test_start_s))
                if self.injector is not None:
                    self.injector.start(self.test_start_s)
            self.live.update(driver.tail.test_start_s, collector.latest())

        try:
            driver.wait(on_poll=on_poll)
        finally:
            self.test_start_s = driver.tail.test_start_s
            self.load_ended_s = time.time()
            for overhead in driver.tail.overheads:
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
        recorded = record_reference_answers(requests, base_url, self.scenario.load.request_timeout_s, context)
        for name, alone in recorded.items():
            line = describe(name, alone)
            self.log(line)
            if alone.unstable or alone.unanswered:
                self.warnings.append(line)
        return {name: alone.answers for name, alone in recorded.items()}
