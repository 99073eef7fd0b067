"""The registry of targets: each kind's factory, and its capabilities (harness.targets.kinds) by scenario."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.config import Scenario
from harness.errors import ConfigError, DeployError
from harness.model import EventSink, Leftover
from harness.targets.base import Target
from harness.targets.kinds import TARGET_KINDS, TargetKind


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
    # Tells the run's watchdog about a resource the target creates as it starts (a kind cluster), to remove
    # should the harness die.
    register: Callable[[Leftover], None] | None = None


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


def machine_preflight(scenario: Scenario) -> None:
    """What the target needs from this machine, checked before anything is built: for a kind cluster, kind and
    Docker working, the cluster's (or the node image's) Kubernetes version, the image load path. A failure is
    bad input as a missing extra is (ConfigError, one line, exit 2): nothing was built or started."""
    config = scenario.target.kubernetes
    if scenario.target.kind == "kubernetes" and config.kind_cluster:
        from harness.targets.kind import KindCluster, KindConfig

        cluster = KindCluster(config.kind_cluster, kubeconfig=config.kubeconfig, node_image=config.kind_node_image)
        try:
            cluster.preflight(node_port=KindConfig.read().node_port if config.load_route == "node-port" else None)
        except DeployError as error:
            raise ConfigError(error.message, hint=error.hint) from error


FACTORIES: dict[str, TargetFactory] = {
    "local": _local,
    "external": _external,
    "docker": _docker,
    "kubernetes": _kubernetes,
}


def _kubernetes_cluster(scenario: Scenario) -> list[str]:
    from harness.targets.kubernetes_preflight import check_cluster

    return check_cluster(scenario)


# What a run asks the target's infrastructure before it builds anything (a cluster: the user's rights, the metrics
# APIs its HPA reads), by kind of target.
INFRASTRUCTURE_CHECKS: dict[str, Callable[[Scenario], list[str]]] = {"kubernetes": _kubernetes_cluster}


def check_infrastructure(scenario: Scenario) -> list[str]:
    """Ask the scenario's target infrastructure what the run needs of it: warnings, or a HarnessError that stops the
    run before anything is built or created."""
    check = INFRASTRUCTURE_CHECKS.get(scenario.target.kind)
    return check(scenario) if check is not None else []


def extras_needed(scenario: Scenario) -> tuple[str, ...]:
    """The optional extras a run of the scenario needs: its target's, and docker's when it builds an image (the
    service's when the scenario names none, the load generator's when the load runs in the cluster) or pushes one
    to a registry."""
    kind = target_kind(scenario)
    builds = (kind.named_image is not None and not kind.named_image(scenario)) or kind.load_in_cluster(scenario)
    pushes = kind.image_registry(scenario) is not None
    return tuple(dict.fromkeys([*kind.extras, *(["docker"] if builds or pushes else [])]))


def target_kind(scenario: Scenario) -> TargetKind:
    """The scenario's kind of target; an unknown name lists the valid ones."""
    kind = TARGET_KINDS.get(scenario.target.kind)
    if kind is None:
        raise ConfigError(
            f"target.kind '{scenario.target.kind}' is unknown (expected one of: {', '.join(TARGET_KINDS)})"
        )
    return kind


def make_target(scenario: Scenario, context: TargetContext) -> Target:
    """The target named by the scenario; an unknown name lists the valid ones."""
    target_kind(scenario)
    return FACTORIES[scenario.target.kind](scenario, context)
