"""What a run must know about each kind of target before the target exists (its capabilities), such as whether
its replicas run an image the run must build first. Plain data: the scenario schema reads it to validate, and
this module imports nothing of the schema (harness.targets.registry holds the factories that build targets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.config import Scenario


def _never(scenario: Scenario) -> bool:
    return False


def _nowhere(scenario: Scenario) -> str | None:
    return None


@dataclass(frozen=True)
class TargetKind:
    """A kind of target: what a run must know about it before it exists."""

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
    load_in_cluster: Callable[[Scenario], bool] = _never
    # The registry the run pushes the images it deploys to, which the replicas then pull by digest; None: the
    # images stay in this machine's Docker daemon (or are side-loaded onto the nodes).
    image_registry: Callable[[Scenario], str | None] = _nowhere
    # The optional extras (harness.extras) the target's own client needs; building an image needs docker's too.
    extras: tuple[str, ...] = ()
    # Why stages[].faults cannot pause its replicas, as the scenario's error says it; None: they can be paused.
    pause_unavailable: str | None = None
    # Something other than the harness scales its replicas (a Kubernetes HPA): the local autoscaler's checks of
    # the scenario's autoscaling metrics do not apply.
    scales_itself: bool = False


TARGET_KINDS: dict[str, TargetKind] = {
    "local": TargetKind(serves_service_dir=True, replicas_on_this_machine=True),
    "external": TargetKind(deploys=False),
    "docker": TargetKind(
        serves_service_dir=True,
        uses_docker=True,
        named_image=lambda scenario: scenario.target.docker.image,
        extras=("docker",),
    ),
    "kubernetes": TargetKind(
        named_image=lambda scenario: scenario.target.kubernetes.image or scenario.target.docker.image,
        load_in_cluster=lambda scenario: scenario.target.kubernetes.loadgen == "in-cluster",
        image_registry=lambda scenario: scenario.target.kubernetes.registry,
        extras=("kubernetes",),
        pause_unavailable="(the API cannot freeze a pod); kill deletes one",
        scales_itself=True,
    ),
}
