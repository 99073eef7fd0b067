"""The registry of targets: each kind's factory, and what a run needs to know about it (its capabilities)
before the target exists, such as whether its replicas run an image the run must build first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import Scenario
from harness.errors import ConfigError
from harness.model import EventSink
from harness.targets.base import Target


@dataclass(frozen=True)
class TargetContext:
    """What a target factory gets besides the scenario: where to work, where events go, CPU placement, and the
    image its replicas run (built by the run's build step, or named by the scenario)."""

    work_dir: Path
    on_event: EventSink
    run_id: str
    image: str | None = None
    replica_cpus: tuple[int, ...] | None = None
    on_replica_started: Callable[[str, int], None] | None = None
    # Tells the run's watchdog about a resource the target creates as it starts (a kind cluster), to sweep
    # should the harness die.
    register: Callable[[dict[str, Any]], None] | None = None


TargetFactory = Callable[[Scenario, TargetContext], Target]


def _local(scenario: Scenario, context: TargetContext) -> Target:
    from harness.targets.local import LocalTarget

    return LocalTarget(
        scenario,
        context.work_dir,
        on_event=context.on_event,
        on_replica_started=context.on_replica_started,
        replica_cpus=context.replica_cpus,
        run_id=context.run_id,
    )


def _external(scenario: Scenario, context: TargetContext) -> Target:
    from harness.targets.external import ExternalTarget

    return ExternalTarget(scenario)


def _docker(scenario: Scenario, context: TargetContext) -> Target:
    from harness.targets.docker import DockerTarget

    return DockerTarget(
        scenario,
        context.work_dir,
        image=context.image,
        run_id=context.run_id,
        on_event=context.on_event,
    )


def _kubernetes(scenario: Scenario, context: TargetContext) -> Target:
    from harness.targets.kubernetes import KubernetesTarget

    return KubernetesTarget(
        scenario,
        context.work_dir,
        on_event=context.on_event,
        run_id=context.run_id,
        image=context.image,
        register=context.register,
    )


def _kubernetes_preflight(scenario: Scenario) -> None:
    config = scenario.target.kubernetes
    if config.kind_cluster:
        from harness.targets.kind import KindCluster, KindConfig

        cluster = KindCluster(config.kind_cluster, kubeconfig=config.kubeconfig, node_image=config.kind_node_image)
        cluster.preflight(node_port=KindConfig.read().node_port if config.load_route == "node-port" else None)


@dataclass(frozen=True)
class TargetKind:
    """A kind of target: its factory, and what a run must know about it before it exists."""

    factory: TargetFactory
    # The harness starts and stops the replicas, so a sweep can choose their count.
    deploys: bool = True
    # Replicas serve (or are built from) the BentoML project at service.path.
    serves_service_dir: bool = False
    # Replicas are processes of this machine: CPU placement and cgroup CPU limits apply to them.
    replicas_on_this_machine: bool = False
    # What dead runs left behind includes containers on this machine's Docker daemon.
    uses_docker: bool = False
    # Replicas run a container image of the service: the one the scenario names, or, when it names none, one
    # the run builds from service.path before deploying. None: replicas are not containers of an image.
    named_image: Callable[[Scenario], str | None] | None = None
    # The load generator runs inside the target (a Kubernetes Job) rather than on this machine.
    load_in_cluster: Callable[[Scenario], bool] = lambda scenario: False
    # The optional extras (harness.extras) the target's own client needs; building an image needs docker's too.
    extras: tuple[str, ...] = ()
    # Why stages[].faults cannot pause its replicas, as the scenario's error says it; None: they can be paused.
    pause_unavailable: str | None = None
    # Checks what the target needs from this machine before anything is built (HarnessError, one line).
    preflight: Callable[[Scenario], None] = lambda scenario: None


TARGETS: dict[str, TargetKind] = {
    "local": TargetKind(_local, serves_service_dir=True, replicas_on_this_machine=True),
    "external": TargetKind(_external, deploys=False),
    "docker": TargetKind(
        _docker,
        serves_service_dir=True,
        uses_docker=True,
        named_image=lambda scenario: scenario.target.docker.image,
        extras=("docker",),
    ),
    "kubernetes": TargetKind(
        _kubernetes,
        named_image=lambda scenario: scenario.target.kubernetes.image or scenario.target.docker.image,
        load_in_cluster=lambda scenario: scenario.target.kubernetes.loadgen == "in-cluster",
        extras=("kubernetes",),
        pause_unavailable="(the API cannot freeze a pod); kill deletes one",
        preflight=_kubernetes_preflight,
    ),
}


def extras_needed(scenario: Scenario) -> tuple[str, ...]:
    """The optional extras a run of the scenario needs: its target's, and docker's when it builds an image (the
    service's when the scenario names none, the load generator's when the load runs in the cluster)."""
    kind = target_kind(scenario)
    builds = (kind.named_image is not None and not kind.named_image(scenario)) or kind.load_in_cluster(scenario)
    return tuple(dict.fromkeys([*kind.extras, *(["docker"] if builds else [])]))


def target_kind(scenario: Scenario) -> TargetKind:
    """The scenario's kind of target; an unknown name lists the valid ones."""
    kind = TARGETS.get(scenario.target.kind)
    if kind is None:
        raise ConfigError(f"target.kind '{scenario.target.kind}' is unknown (expected one of: {', '.join(TARGETS)})")
    return kind


def make_target(scenario: Scenario, context: TargetContext) -> Target:
    """The target named by the scenario; an unknown name lists the valid ones."""
    return target_kind(scenario).factory(scenario, context)
