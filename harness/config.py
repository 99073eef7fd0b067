"""The scenario schema: pydantic models, YAML loading, CLI overrides, and one-line validation errors.

Every model forbids unknown keys so a misspelt key is an error, not a silent default, and every number
must be finite. Scenario files are read with a YAML loader that refuses duplicate keys, aliases and deep
nesting. The `autoscaling:` section uses the Kubernetes autoscaling/v2 HorizontalPodAutoscaler field
names (camelCase) because it feeds both the local autoscaler and the Helm chart unchanged.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from harness.errors import ConfigError
from harness.model import RequestLimits
from harness.objectives import (
    OBJECTIVE_METRICS,
    ObjectiveMetric,
    Traffic,
    documented_metric_names,
    latency_percentile,
    objective_metric,
)
from harness.quantity import parse_quantity
from harness.redact import redact_scenario_data
from harness.targets.kinds import TARGET_KINDS, TargetKind

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
# HPA-shaped models: YAML uses the Kubernetes spelling, Python uses snake_case.
_HPA = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, alias_generator=to_camel, populate_by_name=True)

Quantity = Annotated[str | int | float, Field(union_mode="left_to_right")]
# How a streamed answer is read (harness.load.streaming): Server-Sent Events, raw body pieces, OpenAI chunks.
StreamFormat = Literal["sse", "chunks", "openai"]
# Open-model arrival schedules (harness.load.arrivals).
ArrivalKind = Literal["constant", "poisson", "gamma", "trace"]


def _no_nul(path: Path) -> Path:
    if "\x00" in str(path):
        raise ValueError("a path cannot contain a NUL character")
    return path


def _file_name(value: str) -> str:
    # It becomes a directory name under output.dir: no separators, no '..', no hidden or special names.
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", value):
        raise ValueError(
            "must use only letters, digits, '.', '_' and '-' and not start with '.' (it names the run directory)"
        )
    return value


LocalPath = Annotated[Path, AfterValidator(_no_nul)]
FileName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_file_name)]


# --------------------------------------------------------------------------- service and target


def _target_kind(name: str) -> TargetKind:
    """The capabilities of a target kind the schema accepts (what it deploys, what it can do)."""
    return TARGET_KINDS[name]


class ServiceConfig(BaseModel):
    """The model service under test: a BentoML project directory (not for the external target) and the endpoint
    to load."""

    model_config = _STRICT
    path: LocalPath | None = Field(
        default=None, description="BentoML project directory holding bentofile.yaml; every target but external"
    )
    service: str | None = Field(
        default=None, description="BentoML import string, e.g. 'service:DigitsClassifier'; every target but external"
    )
    endpoint: str = Field(default="/classify", pattern=r"^/", description="the path the payload is POSTed to")
    readiness_path: str = Field(
        default="/readyz", pattern=r"^/", description="answers 2xx when a replica is ready for load"
    )
    metrics_path: str = Field(
        default="/metrics", pattern=r"^/", description="Prometheus metrics of a replica (BentoML's); optional"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="environment of the replicas; values are secrets, never written out"
    )
    model_store: LocalPath | None = Field(
        default=None,
        description="a BENTOML_HOME whose model store replicas read (read-only) and bentos are built from; "
        "default: BENTOML_HOME of service.env, else of the calling environment, else ~/bentoml",
    )
    python: LocalPath | None = Field(
        default=None,
        description="the Python the service runs in: an interpreter or a virtual environment's directory; "
        "default: the harness's own",
    )
    bentoml_config: dict[str, Any] = Field(
        default_factory=dict, description="BentoML configuration overrides (nested mapping)"
    )

    @property
    def project_dir(self) -> Path:
        """`path`, which the scenario's validation requires of every target that serves or builds the project."""
        if self.path is None:
            raise ConfigError("service.path is not set: only the external target runs without a BentoML project")
        return self.path

    @property
    def import_string(self) -> str:
        """`service`, which the scenario's validation requires of every target that serves the project."""
        if self.service is None:
            raise ConfigError("service.service is not set: only the external target runs without a BentoML project")
        return self.service


class ResourceAmounts(BaseModel):
    """CPU and memory in Kubernetes quantities (`500m`, `2`, `512Mi`)."""

    model_config = _STRICT
    cpu: Quantity | None = Field(default=None, description="cores: `500m`, `1.5`")
    memory: Quantity | None = Field(default=None, description="bytes: `512Mi`, `2G`")

    @field_validator("cpu", "memory")
    @classmethod
    def _is_quantity(cls, value: Quantity | None) -> Quantity | None:
        if value is not None:
            parse_quantity(value)
        return value

    @property
    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else parse_quantity(self.cpu)

    @property
    def memory_bytes(self) -> float | None:
        return None if self.memory is None else parse_quantity(self.memory)


class Resources(BaseModel):
    """Per-replica requests and limits, in Kubernetes quantities, enforced on every target."""

    model_config = _STRICT
    requests: ResourceAmounts = Field(default_factory=ResourceAmounts)
    limits: ResourceAmounts = Field(default_factory=ResourceAmounts)

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for amount, measure in (("cpu", "cpu_cores"), ("memory", "memory_bytes")):
            request, limit = getattr(self.requests, measure), getattr(self.limits, measure)
            if request is not None and limit is not None and request > limit:
                raise ValueError(
                    f"requests.{amount} {getattr(self.requests, amount)} is above limits.{amount} "
                    f"{getattr(self.limits, amount)}"
                )
        return self


def _matching(pattern: str, expected: str) -> Callable[[str], str]:
    """A validator of a string against `pattern`, whose error says what was expected instead of the pattern."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}")
        return value

    return check


_platform = _matching(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?", "an OS/architecture such as linux/amd64 or linux/arm64")
# No scheme: Docker and the kubelet choose HTTPS, or HTTP for a registry they are told is insecure.
_registry = _matching(
    r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*",
    "a registry host with an optional port and path, without a scheme, e.g. registry.example.com/team or "
    "127.0.0.1:15000",
)
# Helm release names are DNS-1123 labels of at most 53 characters.
_release = _matching(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?", "a DNS label of at most 53 characters (a-z, 0-9, -)")


class BuildConfig(BaseModel):
    """How the service's container image is built (docker and kubernetes targets, `harness build`)."""

    model_config = _STRICT
    base_image: str | None = Field(
        default=None, description="replace BentoML's base image (e.g. one built locally where no registry is reachable)"
    )
    ca_bundle: LocalPath | None = Field(
        default=None, description="CA bundle for package installs during the build (TLS-intercepting proxies)"
    )
    platform: Annotated[str, AfterValidator(_platform)] | None = Field(
        default=None,
        description="the platform the images are built for, e.g. linux/amd64 (an arm64 laptop building for amd64 "
        "nodes); default: the Docker daemon's",
    )


class DockerTargetConfig(BaseModel):
    """The docker target's containers."""

    model_config = _STRICT
    image: str | None = Field(default=None, description="image to run; default: the built bento's tag")
    network: Literal["host", "publish"] = Field(
        default="publish", description="publish: a port on 127.0.0.1 per container; host: the host's network"
    )


_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The name of an object of the namespace (a Secret, a ServiceAccount): a DNS subdomain.
ObjectName = Annotated[str, Field(pattern=_DNS_SUBDOMAIN, max_length=253)]
# A label key (an optional DNS-subdomain prefix, then a name) and a label value, as Kubernetes validates them.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"^({_DNS_SUBDOMAIN[1:-1]}/)?{_LABEL_NAME}$"
_LABEL_VALUE = rf"^({_LABEL_NAME})?$"


class Toleration(BaseModel):
    """A Kubernetes toleration, in its own spelling (`tolerationSeconds`), passed to the pods unchanged."""

    model_config = _HPA
    key: str | None = Field(default=None, pattern=_LABEL_KEY)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(default=None, pattern=_LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists has no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator Exists (it tolerates every taint)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies to effect NoExecute only")
        return self


def _default_worker_resources() -> Resources:
    # Measured on the project's cluster (digits payload): a worker holds 111-117 MiB and uses 0.06 cores at
    # 50 rps, 0.12 at 200 rps, 0.18 at 600 rps; one Locust process never uses more than one core. Data sets are
    # held in memory: raise the memory for large ones.
    return Resources(
        requests=ResourceAmounts(cpu="250m", memory="256Mi"), limits=ResourceAmounts(cpu="1", memory="512Mi")
    )


def _default_master_resources() -> Resources:
    # Measured beside those workers: the master holds 137 MiB (it loads the same plan) and uses 2 millicores.
    return Resources(
        requests=ResourceAmounts(cpu="50m", memory="256Mi"), limits=ResourceAmounts(cpu="500m", memory="512Mi")
    )


class LoadgenPodsConfig(BaseModel):
    """The in-cluster load generator's pods (target.kubernetes.loadgen: in-cluster): what they request, where they
    may run, which service account they use (they pull their image with target.kubernetes.image_pull_secrets, as
    the model's pods do). Requests and limits are set by default, so the pods are not BestEffort: a ResourceQuota
    admits them, and the scheduler does not crowd them onto a node with no room for them."""

    model_config = _STRICT
    resources: Resources = Field(
        default_factory=_default_worker_resources,
        description="each worker's requests and limits; default: requests cpu 250m, memory 256Mi, limits cpu 1, "
        "memory 512Mi (a worker measured 117 MiB and 0.18 cores at 600 rps)",
    )
    master_resources: Resources = Field(
        default_factory=_default_master_resources,
        description="the master's; default: requests cpu 50m, memory 256Mi, limits cpu 500m, memory 512Mi",
    )
    node_selector: dict[Annotated[str, Field(pattern=_LABEL_KEY)], Annotated[str, Field(pattern=_LABEL_VALUE)]] = Field(
        default_factory=dict, description="node labels the generator pods must run on"
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="taints the generator pods tolerate")
    service_account_name: ObjectName | None = Field(
        default=None,
        description="an existing service account for the generator pods; default: one of their own, with no rights "
        "and no token",
    )


class KubernetesTargetConfig(BaseModel):
    """The kubernetes target: which cluster, how the image gets there, how load and metrics reach the pods."""

    model_config = _STRICT
    kubeconfig: LocalPath | None = Field(
        default=None, description="default: $KUBECONFIG, else ~/.kube/config, else the in-cluster service account"
    )
    context: str | None = Field(default=None, description="kubeconfig context; default: its current one")
    namespace: str = Field(
        default="harness",
        description="namespace the run's objects are applied in (created if missing, when the kubeconfig's user may "
        "create namespaces)",
    )
    release: Annotated[str, AfterValidator(_release)] | None = Field(
        default=None,
        description="the Helm release the run's objects are named after; default: model-service-<6 hex digits of the "
        "run id>, so runs sharing a namespace never share an object",
    )
    image: str | None = Field(default=None, description="image the pods run; default: the one the harness builds")
    registry: Annotated[str, AfterValidator(_registry)] | None = Field(
        default=None,
        description="push the images the run deploys (the service's, built or named and present in the local Docker "
        "daemon, and the in-cluster load generator's) to this registry with your Docker credentials, and deploy "
        "them by digest",
    )
    image_pull_secrets: list[ObjectName] = Field(
        default_factory=list,
        description="Secrets in the namespace that every pod of the run pulls its image with: the model's and the "
        "in-cluster load generator's (kubectl create secret docker-registry)",
    )
    expiry_margin_s: float = Field(
        default=1800,
        gt=0,
        description="the run's objects carry an expiry: its planned end (rollout_timeout_s and the load's duration "
        "after it deploys) plus this margin; `harness cleanup --kubeconfig` deletes expired objects of any run",
    )
    prometheus_url: str | None = Field(
        default=None, description="a Prometheus that scrapes the pods (metrics_route: prometheus reads it)"
    )
    metrics_route: Literal["pod-proxy", "prometheus", "port-forward"] = Field(
        default="pod-proxy",
        description="how each pod's /metrics is read: the API server's pod proxy, the Prometheus at "
        "prometheus_url, or the load port-forward",
    )
    load_route: Literal["port-forward", "pod-ip", "node-port"] = Field(
        default="port-forward",
        description="how load reaches the pods: a port-forward per pod through the API server (any cluster), "
        "their pod IPs (when the pod network is routable from the harness: a node on this machine), or the "
        "Service's NodePort that a kind cluster publishes on 127.0.0.1 (charts/kind-config.yaml)",
    )
    loadgen: Literal["host", "in-cluster"] = Field(
        default="host",
        description="where Locust runs: on the harness's machine, or inside the cluster (charts/loadgen: a "
        "master and loadgen_workers workers sending to the Service)",
    )
    loadgen_workers: int | None = Field(default=None, ge=1, le=32, description="default: load.processes")
    loadgen_pods: LoadgenPodsConfig = Field(
        default_factory=LoadgenPodsConfig,
        description="the in-cluster generator pods' resources, nodeSelector, tolerations and service account",
    )
    node_containerd: LocalPath | None = Field(
        default=None,
        description="containerd socket of a node on this machine (the cluster of scripts/cluster): the image "
        "is imported there instead of pulled from a registry",
    )
    rollout_timeout_s: float = Field(default=300, gt=0, description="how long the pods may take to become ready")
    kind_cluster: str | None = Field(default=None, description="kind cluster to create or reuse")
    kind_node_image: str | None = Field(
        default=None, description="node image of a kind cluster the harness creates (kind create cluster --image)"
    )
    keep_cluster: bool = Field(default=False, description="keep a kind cluster the harness created")

    @model_validator(mode="after")
    def _routes_have_what_they_need(self) -> KubernetesTargetConfig:
        if self.metrics_route == "prometheus" and not self.prometheus_url:
            raise ValueError("target.kubernetes.metrics_route 'prometheus' needs target.kubernetes.prometheus_url")
        if self.registry is not None and (self.node_containerd is not None or self.kind_cluster is not None):
            side_loaded = "node_containerd" if self.node_containerd is not None else "kind_cluster"
            raise ValueError(
                f"target.kubernetes.registry and target.kubernetes.{side_loaded} both bring the image to the nodes "
                "(pulled from the registry, or loaded onto the node); choose one"
            )
        if self.load_route == "node-port" and not self.kind_cluster:
            raise ValueError(
                "target.kubernetes.load_route 'node-port' needs target.kubernetes.kind_cluster (the NodePort is "
                "published by the kind cluster's extraPortMappings)"
            )
        if self.loadgen == "host" and self.loadgen_pods != LoadgenPodsConfig():
            raise ValueError("target.kubernetes.loadgen_pods applies to the pods of loadgen: in-cluster")
        return self


class TlsConfig(BaseModel):
    """How the external target checks https URLs: verified by default (the system's CAs, or `ca_bundle`), an
    explicit opt-out, and a client certificate for services that require one (mTLS)."""

    model_config = _STRICT
    verify: bool = Field(default=True, description="verify the service's certificate and host name")
    ca_bundle: LocalPath | None = Field(
        default=None, description="PEM file of the CA certificates to trust instead of the system's"
    )
    client_cert: LocalPath | None = Field(
        default=None, description="PEM client certificate for services that require one (mTLS); may hold its key"
    )
    client_key: LocalPath | None = Field(default=None, description="PEM private key of client_cert, if not in it")

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if not self.verify and self.ca_bundle is not None:
            raise ValueError("target.tls: ca_bundle verifies the service, verify: false does not; choose one")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("target.tls.client_key needs target.tls.client_cert")
        return self


class TargetConfig(BaseModel):
    """Where replicas run."""

    model_config = _STRICT
    kind: Literal["local", "external", "docker", "kubernetes"] = Field(
        default="local",
        description="local: bentoml serve processes here; external: a service that already runs (urls); docker: "
        "containers; kubernetes: a cluster (docs/targets.md)",
    )
    replicas: int = Field(default=1, ge=1, le=64, description="replicas at the start (autoscaling may change it)")
    startup_timeout_s: float = Field(default=90, gt=0, description="how long replicas may take to become ready")
    # As the kubelet restarts a crashed container: after 10 s, doubling up to 5 minutes.
    restart_backoff_s: float = Field(
        default=10, gt=0, le=300, description="local and docker: first restart delay of a crashed replica"
    )
    urls: list[str] = Field(default_factory=list, description="external target: base URLs of running replicas")
    allow_remote: bool = Field(
        default=False,
        description="external target: send load to URLs that are not loopback (your staging service); an explicit "
        "opt-in, also given by `harness run --allow-remote`",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="external target: how https URLs are checked")
    docker: DockerTargetConfig = Field(default_factory=DockerTargetConfig)
    kubernetes: KubernetesTargetConfig = Field(default_factory=KubernetesTargetConfig)

    @model_validator(mode="after")
    def _external_needs_urls(self) -> TargetConfig:
        deploys = _target_kind(self.kind).deploys
        if deploys and self.tls != TlsConfig():
            raise ValueError(
                f"target.tls applies to the external target's https URLs, not to target.kind '{self.kind}'"
            )
        if not deploys and not self.urls:
            raise ValueError(f"target.kind '{self.kind}' needs target.urls (base URLs of the running service)")
        for url in self.urls:
            if not re.match(r"^https?://[^/?#\s]+(/\S*)?$", url):
                raise ValueError(f"target.urls entry '{url}' is not an http(s) URL (expected e.g. https://host:8443)")
            loopback = re.match(r"^https?://([^/@]*@)?(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/.*)?$", url)
            if not loopback and not self.allow_remote:
                raise ValueError(
                    f"target.urls entry '{url}' is not loopback; load goes to a remote service only when you opt in "
                    "with target.allow_remote: true (or harness run --allow-remote)"
                )
        return self


# --------------------------------------------------------------------------- load


class Fault(BaseModel):
    """A fault injected into one replica during a stage: the stage becomes the experiment of how the service
    copes (errors while it lasts, time to recover, whether the other replicas held the objectives)."""

    model_config = _STRICT
    at_s: float = Field(ge=0, description="seconds into the stage")
    action: Literal["kill", "pause"] = Field(
        description="kill: SIGKILL the replica (a container's process, a pod deleted at once); "
        "pause: freeze it (SIGSTOP, docker pause) for pause_s"
    )
    replica: int = Field(default=1, ge=1, le=64, description="the Nth ready replica, oldest first")
    pause_s: float | None = Field(default=None, gt=0, le=3600, description="pause: how long the replica stays frozen")

    @model_validator(mode="after")
    def _pause_needs_a_duration(self) -> Fault:
        if self.action == "pause" and self.pause_s is None:
            raise ValueError("a pause fault needs pause_s (how long the replica stays frozen)")
        if self.action == "kill" and self.pause_s is not None:
            raise ValueError("pause_s only applies to pause faults")
        return self


class Stage(BaseModel):
    """One load stage: closed model (a number of users) or open model (a fixed arrival rate)."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="unique; names the stage in reports")
    duration_s: float = Field(gt=0, le=24 * 3600, description="how long the stage lasts")
    users: int | None = Field(
        default=None, ge=0, le=10_000, description="closed model: users each sending when the previous answer came"
    )
    spawn_rate: float | None = Field(default=None, gt=0, description="users started per second")
    arrival_rate_rps: float | None = Field(
        default=None, gt=0, le=100_000, description="open model: requests per second, whatever the service does"
    )
    arrival: ArrivalKind = Field(
        default="poisson",
        description="open model: constant gaps, poisson, gamma (with burstiness, as vLLM's benchmark_serving), or "
        "trace (the gaps of a recorded trace file, scaled to arrival_rate_rps)",
    )
    burstiness: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="arrival gamma: the gaps' shape; 1 is Poisson, below 1 burstier, above 1 more regular",
    )
    trace: LocalPath | None = Field(
        default=None,
        description="arrival trace: a file of arrival timestamps in seconds (one a line, JSON lines with `timestamp`, "
        "or CSV with a timestamp column, as Azure's LLM traces); its gaps are replayed at arrival_rate_rps",
    )
    judged: bool = Field(default=True, description="whether objectives apply to this stage (false for warm-up)")
    faults: list[Fault] = Field(
        default_factory=list, max_length=16, description="replicas killed or frozen during the stage"
    )

    @model_validator(mode="after")
    def _one_model(self) -> Stage:
        for fault in self.faults:
            if fault.at_s >= self.duration_s:
                raise ValueError(
                    f"stage '{self.name}': a fault at_s={fault.at_s:g} falls after the stage ends "
                    f"(duration_s={self.duration_s:g})"
                )
        if (self.users is None) == (self.arrival_rate_rps is None):
            raise ValueError(
                f"stage '{self.name}' needs exactly one of users (closed model) or arrival_rate_rps (open model)"
            )
        if self.arrival_rate_rps is not None and self.spawn_rate is not None:
            raise ValueError(f"stage '{self.name}': spawn_rate only applies to users stages")
        if self.burstiness is not None and self.arrival != "gamma":
            raise ValueError(f"stage '{self.name}': burstiness shapes gamma arrivals; set arrival: gamma")
        if (self.trace is not None) != (self.arrival == "trace"):
            raise ValueError(f"stage '{self.name}': arrival trace and a trace file go together")
        if self.arrival == "trace" and self.users is not None:
            raise ValueError(f"stage '{self.name}': a trace sets arrivals, which users stages do not have")
        return self

    @property
    def open_model(self) -> bool:
        return self.arrival_rate_rps is not None


class PayloadConfig(BaseModel):
    """Where request bodies come from: the digits data set, or a JSON-lines file of bodies."""

    model_config = _STRICT
    source: Literal["digits", "jsonl"] = Field(
        default="digits",
        description="digits: images from scikit-learn's digits data set (the digits extra); jsonl: the bodies of file",
    )
    file: LocalPath | None = Field(default=None, description="jsonl: one JSON request body per line")
    batch_rows: int = Field(default=1, ge=1, le=256, description="digits: images per request")
    malformed_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of requests sent as bad input (JSON: wrong types or shapes, NaN, empty, huge, not JSON, "
        "wrong content type; files: truncated, another type, a name for the file, an empty or missing part, huge, no "
        "boundary) expecting 4xx; judged by bad_input_5xx_rate, not by error_rate or latency",
    )

    @model_validator(mode="after")
    def _file_for_jsonl(self) -> PayloadConfig:
        if self.source == "jsonl" and self.file is None:
            raise ValueError("payload.source 'jsonl' needs payload.file")
        return self


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A data set column in a body template: "{{column}}".
PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")
_FIELD_PATH = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


def template_columns(template: Any) -> list[str]:
    """The data set columns a body template names as "{{column}}", anywhere in it."""
    if isinstance(template, str):
        return [name.strip() for name in PLACEHOLDER.findall(template)]
    if isinstance(template, list):
        return [name for item in template for name in template_columns(item)]
    if isinstance(template, dict):
        return [name for value in template.values() for name in template_columns(value)]
    return []


def env_references(value: str) -> list[str]:
    """The environment variables a header value names as `${NAME}`."""
    return _ENV_REFERENCE.findall(value)


def header_variables(headers: Iterable[Mapping[str, str]]) -> list[str]:
    """The environment variables any of these requests' headers name (`${NAME}`), sorted, each once."""
    return sorted({name for each in headers for value in each.values() for name in env_references(value)})


class FieldCheck(BaseModel):
    """One check of a JSON answer: the value at `field` (dotted, list indexes as numbers: `labels.0`) equals a
    value (not null), is among values, or equals the row's `expected_column` in the request's data set."""

    model_config = _STRICT
    field: str = Field(pattern=_FIELD_PATH)
    equals: Any = None
    among: list[Any] | None = Field(default=None, min_length=1)
    expected_column: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_expectation(self) -> FieldCheck:
        # Counted by value, not by which keys were written, so a dumped scenario reads back the same.
        given = [name for name in ("equals", "among", "expected_column") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"check of '{self.field}' needs exactly one of equals, among or expected_column")
        return self


class SameAsAlone(BaseModel):
    """An answer under load must agree with the answer the same body got when it was sent alone, one request
    at a time before the load (what batching, caching or concurrency bugs break); no expected label needed."""

    model_config = _STRICT
    field: str | None = Field(
        default=None, pattern=_FIELD_PATH, description="the JSON field compared (`labels.0`); default: the whole answer"
    )
    bodies: int = Field(
        default=50, ge=1, le=1000, description="distinct bodies answered alone (each twice) before the load"
    )
    tolerance: float = Field(default=0.0, ge=0, description="numbers that differ by at most this much agree")


class ResponseCheck(BaseModel):
    """What a correct answer looks like: its status, fields of its JSON body, and agreement with the answer the
    same body gets alone. A request whose expected statuses are all 4xx is bad input: a 5xx to it counts in
    bad_input_5xx_rate."""

    model_config = _STRICT
    status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, min_length=1, description="expected statuses; default: any 2xx"
    )
    fields: list[FieldCheck] = Field(default_factory=list, description="JSON fields of the answer (mismatch_rate)")
    same_as_alone: SameAsAlone | None = Field(
        default=None,
        description="answers under load must equal the same body's answer alone (mismatch_rate); true for the "
        "whole answer, or {field, bodies, tolerance}",
    )

    @field_validator("same_as_alone", mode="before")
    @classmethod
    def _true_for_defaults(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @property
    def expects_bad_input(self) -> bool:
        return self.status is not None and all(400 <= code < 500 for code in self.status)

    @property
    def reads_answer(self) -> bool:
        """Whether judging an answer needs its body."""
        return bool(self.fields) or self.same_as_alone is not None


class TokenLengths(BaseModel):
    """A distribution of token counts: a normal of `mean` and `std_dev` cut to [min, max] (inference-perf's
    synthetic lengths); `std_dev` 0 is a fixed length."""

    model_config = _STRICT
    mean: float = Field(ge=1, le=1_000_000)
    std_dev: float = Field(default=0.0, ge=0)
    min: int = Field(default=1, ge=1)
    max: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _ordered(self) -> TokenLengths:
        if self.max is not None and not self.min <= self.mean <= self.max:
            raise ValueError(f"token lengths: mean {self.mean:g} must lie within min {self.min} and max {self.max}")
        if self.mean < self.min:
            raise ValueError(f"token lengths: mean {self.mean:g} is below min {self.min}")
        return self


def _fixed_length(value: Any) -> Any:
    return {"mean": value} if isinstance(value, int | float) and not isinstance(value, bool) else value


FixedOrTokenLengths = Annotated[TokenLengths, BeforeValidator(_fixed_length)]


class SyntheticPrompts(BaseModel):
    """Prompts made up by the harness with given input and output token lengths (vLLM's random data set,
    inference-perf's synthetic one): text of common English words, each about one token to BPE tokenizers, or
    token ids, exact for any server that takes them (completions only)."""

    model_config = _STRICT
    input_tokens: FixedOrTokenLengths = Field(
        description="prompt length in tokens: a number or {mean, std_dev, min, max}"
    )
    output_tokens: FixedOrTokenLengths = Field(description="max_tokens of each request: a number or a distribution")
    prompts: int = Field(default=500, ge=1, le=100_000, description="distinct prompts drawn (from load.seed)")
    token_ids: bool = Field(default=False, description="send prompts as token ids (completions API only)")
    vocabulary: int = Field(default=1000, ge=2, description="token_ids: ids are drawn from 0 to vocabulary - 1")


class OpenAIRequest(BaseModel):
    """An OpenAI-compatible generation request (`/v1/completions` or `/v1/chat/completions`): bodies built from a
    data set of prompts or conversations, or from synthetic prompts, sent with stream: true and read token by
    token."""

    model_config = _STRICT
    api: Literal["completions", "chat"] | None = Field(
        default=None, description="default: chat when the path ends in /chat/completions, else completions"
    )
    model: str | None = Field(default=None, min_length=1, description="the body's `model`; omitted when not set")
    prompts: LocalPath | None = Field(
        default=None,
        description='JSON lines: {"prompt": text}, {"messages": [...]} (OpenAI chat), or {"conversations": [...]} '
        "(ShareGPT); a row's max_tokens overrides max_tokens",
    )
    synthetic: SyntheticPrompts | None = None
    max_tokens: int | None = Field(default=None, ge=1, description="output tokens asked of each data set prompt")
    ignore_eos: bool = Field(default=False, description="ask the server to generate max_tokens whatever (vLLM's)")
    include_usage: bool = Field(
        default=True, description="ask for the usage chunk (stream_options); tokens are counted when none comes"
    )
    body: dict[str, Any] = Field(
        default_factory=dict, description="further body fields sent as they are (temperature, top_p, seed ...)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> OpenAIRequest:
        if (self.prompts is None) == (self.synthetic is None):
            raise ValueError("openai: give prompts (a JSON-lines file) or synthetic, one of them")
        if self.synthetic is not None and self.max_tokens is not None:
            raise ValueError("openai: synthetic.output_tokens sets max_tokens; remove max_tokens")
        return self


# A media type with optional parameters: `image/png`, `text/plain; charset=utf-8`.
_MEDIA_TYPE = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+( *;.*)?$"
# A form field or part name: sent inside a quoted header parameter, so no quote, backslash or line break.
_PART_NAME = r'^[^"\\\r\n]+$'
# What a multipart part or a form field holds besides a file: text, or a number written as text.
FieldValue = Annotated[StrictStr | StrictInt | StrictFloat, Field(union_mode="left_to_right")]


class FileInput(BaseModel):
    """A file sent as the whole request body (`body_binary`) or as a file part of a multipart body. Its path is
    relative to the request's data set or `files` folder, else to the scenario file."""

    model_config = _STRICT
    file: str = Field(min_length=1, description='the file\'s path; "{{column}}" is filled from a data set row')
    content_type: str | None = Field(
        default=None,
        pattern=_MEDIA_TYPE,
        description="its media type (image/png); default: guessed from the file's name, else application/octet-stream",
    )
    filename: str | None = Field(
        default=None, pattern=_PART_NAME, description="multipart: the file name sent; default: the file's own name"
    )

    @property
    def templated(self) -> bool:
        """Whether the path or file name is filled from a data set row."""
        return bool(template_columns([self.file, self.filename or ""]))


MultipartPart = Annotated[FileInput | StrictStr | StrictInt | StrictFloat, Field(union_mode="left_to_right")]


class RequestConfig(BaseModel):
    """One kind of request users send, chosen by weight: method, path, headers, body and response checks."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")
    weight: float = Field(default=1.0, gt=0)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "POST"
    path: str = Field(pattern=r"^/")
    headers: dict[str, str] = Field(
        default_factory=dict, description="`${NAME}` in a value is read from the environment; outputs show `${NAME}`"
    )
    body_file: LocalPath | None = Field(default=None, description="JSON-lines file, one request body per line")
    body_template: Any = Field(
        default=None,
        description='JSON body; a string "{{column}}" is replaced by that column of a data set row (without '
        "placeholders, the one body every request sends)",
    )
    body_binary: FileInput | None = Field(
        default=None, description="a file's bytes as the whole body, sent with its content_type (image/png, audio/wav)"
    )
    multipart: dict[Annotated[str, Field(pattern=_PART_NAME)], MultipartPart] | None = Field(
        default=None,
        min_length=1,
        description="a multipart/form-data body: part name -> a file ({file, content_type, filename}) or a plain "
        'value; "{{column}}" is filled from a data set row',
    )
    form: dict[Annotated[str, Field(min_length=1)], FieldValue] | None = Field(
        default=None,
        min_length=1,
        description='an application/x-www-form-urlencoded body: field -> value; "{{column}}" filled from a row',
    )
    dataset: LocalPath | None = Field(default=None, description="JSON-lines file, one object (row) per line")
    files: LocalPath | None = Field(
        default=None,
        description='a folder: one row per file in it and its subfolders, {"file": its path in the folder}',
    )
    check: ResponseCheck = Field(default_factory=ResponseCheck)
    stream: StreamFormat | None = Field(
        default=None,
        description="read the answer as it arrives, timing each token: sse (each Server-Sent Event with data), "
        "chunks (each piece of the body), openai (OpenAI-compatible completion chunks; the default with openai:)",
    )
    openai: OpenAIRequest | None = Field(
        default=None, description="an OpenAI-compatible generation request, its bodies built from prompts"
    )

    @property
    def body_kinds(self) -> list[str]:
        """The body fields this request sets (valid when at most one)."""
        return [name for name in BODY_FIELDS if getattr(self, name) is not None]

    @property
    def sends_files(self) -> bool:
        """Whether its bodies are made from files or form fields rather than JSON."""
        return any(getattr(self, name) is not None for name in ("body_binary", "multipart", "form"))

    def file_inputs(self) -> list[FileInput]:
        """The files its body names (body_binary, multipart file parts)."""
        parts = [part for part in (self.multipart or {}).values() if isinstance(part, FileInput)]
        return [self.body_binary, *parts] if self.body_binary is not None else parts

    def _templated(self) -> bool:
        values = [*(self.form or {}).values(), *(self.multipart or {}).values(), self.body_binary]
        return any(
            value.templated if isinstance(value, FileInput) else bool(template_columns(str(value)))
            for value in values
            if value is not None
        )

    @model_validator(mode="after")
    def _body_sources(self) -> RequestConfig:
        where = f"request '{self.name}'"
        if self.openai is not None:
            if self.body_kinds or self.dataset is not None or self.files is not None:
                raise ValueError(
                    f"{where}: openai builds the bodies; remove {', '.join(self.body_kinds) or 'the rows'}"
                )
            if self.method != "POST":
                raise ValueError(f"{where}: an openai request is a POST")
            if self.stream not in (None, "openai"):
                raise ValueError(f"{where}: an openai request's answer is read as stream openai")
            if self.openai_api is None:
                raise ValueError(
                    f"{where}: openai.api is needed when the path does not end in /completions or /chat/completions"
                )
            if self.openai_api == "chat" and self.openai.synthetic is not None and self.openai.synthetic.token_ids:
                raise ValueError(f"{where}: the chat API takes text; synthetic.token_ids is for completions")
        if self.streams and self.check.reads_answer:
            raise ValueError(
                f"{where}: check.fields and check.same_as_alone read a JSON answer; a streamed answer is judged by its "
                "status and by being read to its end"
            )
        kinds = self.body_kinds
        if len(kinds) > 1:
            raise ValueError(f"{where}: give one body ({', '.join(BODY_FIELDS)}), not {' and '.join(kinds)}")
        if self.dataset is None and template_columns(self.body_template):
            raise ValueError(f"{where}: body_template names data set columns and needs a dataset to fill them from")
        if self.body_file is not None and (self.dataset is not None or self.files is not None):
            raise ValueError(f"{where}: a dataset fills body_template; body_file bodies are sent as they are")
        if self.dataset is not None and self.files is not None:
            raise ValueError(f"{where}: rows come from a dataset or from a files folder, not both")
        if self.files is not None and not self.sends_files:
            raise ValueError(f"{where}: files gives one row per file; send it with body_binary or multipart")
        if self._templated() and self.dataset is None and self.files is None:
            raise ValueError(f'{where}: "{{{{column}}}}" needs a dataset or a files folder to fill it from')
        if self.method in ("GET", "HEAD") and kinds:
            raise ValueError(f"{where}: a {self.method} request has no body")
        if self.sends_files and any(header.lower() == "content-type" for header in self.headers):
            raise ValueError(
                f"{where}: the Content-Type of a {kinds[0]} body is the harness's to set (give a file's "
                "content_type instead of the header)"
            )
        for check in self.check.fields:
            if check.expected_column is not None and self.dataset is None:
                raise ValueError(f"{where}: check of '{check.field}' reads expected_column from a dataset; add one")
        for header, value in self.headers.items():
            if value.count("${") != len(env_references(value)):
                raise ValueError(f"{where}: header '{header}': write environment variables as ${{NAME}}")
        return self

    @property
    def stream_format(self) -> StreamFormat | None:
        """How the answer is read as it arrives (None: whole)."""
        return "openai" if self.openai is not None else self.stream

    @property
    def streams(self) -> bool:
        return self.stream_format is not None

    @property
    def openai_api(self) -> Literal["completions", "chat"] | None:
        """The OpenAI API of an openai request: as given, else from its path."""
        if self.openai is None:
            return None
        if self.openai.api is not None:
            return self.openai.api
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/chat/completions"):
            return "chat"
        return "completions" if path.endswith("/completions") else None


# The ways a request can carry a body; at most one per request.
BODY_FIELDS = ("body_file", "body_template", "body_binary", "multipart", "form")


class LoadConfig(BaseModel):
    """The load generator's own settings."""

    model_config = _STRICT
    processes: int = Field(default=1, ge=1, le=64, description="Locust worker processes")
    request_timeout_s: float = Field(default=10, gt=0, description="a request unanswered this long fails (timeout)")
    max_in_flight: int = Field(default=2000, ge=1, description="open model: bound on outstanding requests")
    seed: int = Field(default=42, description="seeds the arrivals and the choice of bodies: a run can be repeated")
    locustfile: LocalPath | None = Field(
        default=None,
        description="your own Locust file: its HttpUser/FastHttpUser classes send the load of users stages, "
        "recorded and judged like the harness's own",
    )
    cpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, min_length=1, description="CPU ids for the load generator; default: automatic"
    )

    @field_validator("cpus")
    @classmethod
    def _distinct(cls, cpus: list[int] | None) -> list[int] | None:
        if cpus is not None and len(set(cpus)) != len(cpus):
            raise ValueError(f"CPU ids must be distinct, got {cpus}")
        return cpus


# --------------------------------------------------------------------------- objectives and analysis


class PerRequestLimits(BaseModel):
    """Limits every request must meet to count towards goodput_rps (vLLM's --goodput): at least one."""

    model_config = _STRICT
    ttft_ms: float | None = Field(default=None, gt=0, description="time to first token")
    tpot_ms: float | None = Field(default=None, gt=0, description="time per output token")
    latency_ms: float | None = Field(default=None, gt=0, description="end-to-end latency")

    @model_validator(mode="after")
    def _some_limit(self) -> PerRequestLimits:
        if self.ttft_ms is None and self.tpot_ms is None and self.latency_ms is None:
            raise ValueError("per_request needs at least one of ttft_ms, tpot_ms, latency_ms")
        return self


class Objective(BaseModel):
    """One service-level objective: a metric and a bound, checked on every judged stage."""

    model_config = _STRICT
    metric: str = Field(description=documented_metric_names())
    max: float | None = Field(default=None, description="the bound the measurement must stay under")
    min: float | None = Field(default=None, description="the bound the measurement must stay over")
    stages: list[str] | None = Field(default=None, description="stage names; default: every judged stage")
    per_request: PerRequestLimits | None = Field(
        default=None, description="goodput_rps: the limits a request must all meet to be counted"
    )
    request: str | None = Field(
        default=None, description="judge one named request (requests[].name) alone; default: every request together"
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        objective_metric(value)
        return value

    @model_validator(mode="after")
    def _one_bound(self) -> Objective:
        if (self.max is None) == (self.min is None):
            raise ValueError(f"objective '{self.metric}' needs exactly one of max or min")
        takes_limits = objective_metric(self.metric).takes_request_limits
        if takes_limits and self.per_request is None:
            raise ValueError(f"objective '{self.metric}' needs per_request limits (ttft_ms, tpot_ms, latency_ms)")
        if not takes_limits and self.per_request is not None:
            raise ValueError(
                f"objective '{self.metric}' takes no per_request limits (only goodput_rps and goodput_fraction do)"
            )
        return self

    @property
    def request_limits(self) -> RequestLimits | None:
        """The per-request limits of a goodput objective, as the load generator counts and the verdict reads them."""
        if self.per_request is None:
            return None
        limits = self.per_request
        return RequestLimits(ttft_ms=limits.ttft_ms, tpot_ms=limits.tpot_ms, latency_ms=limits.latency_ms)

    @property
    def percentile(self) -> float | None:
        """The percentile (0-100) this objective is about, for latency objectives."""
        return latency_percentile(self.metric)

    @property
    def kind(self) -> ObjectiveMetric:
        """The registry entry of this objective's metric: unit, how it is measured and shown."""
        return objective_metric(self.metric)

    @property
    def name(self) -> str:
        bound = f"<= {self.max:g}" if self.max is not None else f">= {self.min:g}"
        limits = self.request_limits
        name = f"{self.metric} {bound}" + (f" ({limits.key})" if limits is not None else "")
        return name if self.request is None else f"{name} for {self.request}"


class ValidityConfig(BaseModel):
    """Rules that turn a measurement into INCONCLUSIVE rather than a misleading PASS or FAIL."""

    model_config = _STRICT
    min_tail_samples: int = Field(
        default=10, ge=1, description="a pNN needs at least this many samples above it: n >= k / (1 - q)"
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="confidence level of every interval")
    loadgen_cpu_saturation: float = Field(default=0.9, gt=0, le=1, description="fraction of a core per process")
    achieved_rate_shortfall: float = Field(
        default=0.05, ge=0, lt=1, description="open model: arrivals sent may fall this far short, beyond Poisson noise"
    )


class CapacityConfig(BaseModel):
    """The capacity plan: replicas, CPU and memory for a peak rate, from the measured maximum sustainable rate."""

    model_config = _STRICT
    target_peak_rps: float | None = Field(default=None, gt=0, description="the peak rate to plan for")
    headroom: float = Field(default=0.3, ge=0, lt=10, description="spare capacity on top: 0.3 is 30%")
    price_per_core_hour: float | None = Field(default=None, ge=0, description="gives a monthly cost")


# --------------------------------------------------------------------------- autoscaling (HPA spec names)


class MetricTarget(BaseModel):
    model_config = _HPA
    type: Literal["Utilization", "AverageValue", "Value"]
    average_utilization: int | None = Field(default=None, gt=0)
    average_value: Quantity | None = None
    value: Quantity | None = None

    @model_validator(mode="after")
    def _value_for_type(self) -> MetricTarget:
        needed = {"Utilization": "average_utilization", "AverageValue": "average_value", "Value": "value"}[self.type]
        if getattr(self, needed) is None:
            raise ValueError(f"target type {self.type} needs {to_camel(needed)}")
        for quantity in (self.average_value, self.value):
            if quantity is not None:
                parse_quantity(quantity)
        return self


class ResourceMetricSource(BaseModel):
    model_config = _HPA
    # Any resource a cluster's metrics API serves (cpu, memory); the local autoscaler reads cpu only
    # (local_autoscaler.check_supported), a Kubernetes cluster's HPA whatever its metrics.k8s.io serves.
    name: str = Field(min_length=1)
    target: MetricTarget


class ContainerResourceMetricSource(ResourceMetricSource):
    container: str = Field(min_length=1)


class LabelSelectorRequirement(BaseModel):
    model_config = _HPA
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(BaseModel):
    model_config = _HPA
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class MetricIdentifier(BaseModel):
    model_config = _HPA
    name: str
    selector: LabelSelector | None = None


class CrossVersionObjectReference(BaseModel):
    model_config = _HPA
    api_version: str | None = None
    kind: str
    name: str


class ObjectMetricSource(BaseModel):
    model_config = _HPA
    described_object: CrossVersionObjectReference
    metric: MetricIdentifier
    target: MetricTarget


class ExternalMetricSource(BaseModel):
    model_config = _HPA
    metric: MetricIdentifier
    target: MetricTarget


class PodsMetricSource(BaseModel):
    model_config = _HPA
    metric: MetricIdentifier
    target: MetricTarget

    @model_validator(mode="after")
    def _average_value_only(self) -> PodsMetricSource:
        if self.target.type != "AverageValue":
            raise ValueError(
                f"a Pods metric target must be type AverageValue (Kubernetes allows no other), not {self.target.type}"
            )
        return self


class MetricSpec(BaseModel):
    """One HPA metric (autoscaling/v2 MetricSpec): its type and the source section that type names."""

    model_config = _HPA
    type: Literal["Resource", "ContainerResource", "Pods", "Object", "External"]
    resource: ResourceMetricSource | None = None
    container_resource: ContainerResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object: ObjectMetricSource | None = None
    external: ExternalMetricSource | None = None

    @model_validator(mode="after")
    def _source_for_type(self) -> MetricSpec:
        sections = {
            "Resource": "resource",
            "ContainerResource": "container_resource",
            "Pods": "pods",
            "Object": "object",
            "External": "external",
        }
        wanted = sections[self.type]
        article = "an" if wanted[0] in "aeiou" else "a"
        if getattr(self, wanted) is None:
            raise ValueError(f"metric type {self.type} needs {article} {to_camel(wanted)}: section")
        others = [to_camel(name) for name in sections.values() if name != wanted and getattr(self, name) is not None]
        if others:
            raise ValueError(
                f"metric type {self.type} takes {article} {to_camel(wanted)}: section only, not {', '.join(others)}"
            )
        return self


class HPAScalingPolicy(BaseModel):
    model_config = _HPA
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800)


class HPAScalingRules(BaseModel):
    model_config = _HPA
    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = Field(default=None, min_length=1)
    tolerance: Quantity | None = None


class HorizontalPodAutoscalerBehavior(BaseModel):
    model_config = _HPA
    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


class AutoscalingConfig(BaseModel):
    """HorizontalPodAutoscaler autoscaling/v2 spec fields, plus the controller flags the local autoscaler needs."""

    model_config = _HPA
    enabled: bool = True
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    metrics: list[MetricSpec] = Field(min_length=1)
    behavior: HorizontalPodAutoscalerBehavior | None = None
    # kube-controller-manager flags, not HPA spec fields; names follow the flags.
    sync_period_seconds: float = Field(default=15, gt=0)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    cpu_initialization_period_seconds: float = Field(default=300, ge=0)
    initial_readiness_delay_seconds: float = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) is below minReplicas ({self.min_replicas})")
        return self


# --------------------------------------------------------------------------- run-level settings


class MetricsConfig(BaseModel):
    """How the run is measured and where its figures go besides the run directory."""

    model_config = _STRICT
    interval_s: float = Field(default=1.0, ge=0.1, le=60, description="length of a record (client, /metrics, CPU)")
    exporter_port: int | None = Field(default=None, ge=0, le=65535, description="serve harness metrics on 127.0.0.1")
    pushgateway_url: str | None = Field(
        default=None, description="push the verdict's final figures to this Pushgateway"
    )
    remote_write_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="send the run's series while it runs to this Prometheus remote-write receiver (e.g. "
        "http://127.0.0.1:9090/api/v1/write); a user:password in the URL is sent as basic auth, never shown",
    )
    remote_write_interval_s: float = Field(default=5.0, gt=0, le=300, description="how often the series are sent")


class OutputConfig(BaseModel):
    """Where the run directory goes."""

    model_config = _STRICT
    dir: LocalPath = Field(default=Path("reports"), description="run directories are made under it")
    run_id: FileName | None = Field(
        default=None, description="the run directory's name; default: UTC start, scenario name and 6 random hex digits"
    )


class Scenario(BaseModel):
    """A whole load test: what to serve, where, how hard to drive it, and what must hold."""

    model_config = _STRICT
    name: FileName = Field(description="names the run directories (letters, digits, '.', '_', '-')")
    description: str = Field(default="", description="free text, shown in the reports")
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)
    resources: Resources = Field(default_factory=Resources)
    stages: list[Stage] = Field(min_length=1, description="the load, stage after stage")
    payload: PayloadConfig = Field(default_factory=PayloadConfig)
    requests: list[RequestConfig] | None = Field(
        default=None, min_length=1, description="named requests users send by weight; default: payload to endpoint"
    )
    load: LoadConfig = Field(default_factory=LoadConfig)
    objectives: list[Objective] = Field(default_factory=list, description="what must hold on every judged stage")
    validity: ValidityConfig = Field(default_factory=ValidityConfig)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    autoscaling: AutoscalingConfig | None = None
    build: BuildConfig = Field(default_factory=BuildConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        target = _target_kind(self.target.kind)
        if target.deploys:
            for key in ("path", "service"):
                if getattr(self.service, key) is None:
                    raise ValueError(
                        f"service.{key} is required: target.kind '{self.target.kind}' serves a BentoML project "
                        "(only an external target runs without one)"
                    )
        names = [stage.name for stage in self.stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(duplicates)}")
        if self.requests is not None:
            request_names = [request.name for request in self.requests]
            repeated = sorted({n for n in request_names if request_names.count(n) > 1})
            if repeated:
                raise ValueError(f"request names must be unique; repeated: {', '.join(repeated)}")
            if self.payload.source != "digits" or self.payload.file is not None or self.payload.batch_rows != 1:
                raise ValueError(
                    "payload.source, payload.file and payload.batch_rows feed service.endpoint; with requests: give "
                    "each request its body_file or body_template"
                )
        by_name = {request.name: request for request in self.requests or []}
        for objective in self.objectives:
            if objective.request is not None and objective.request not in by_name:
                raise ValueError(
                    f"objective '{objective.metric}' names request '{objective.request}', which is not one of: "
                    + (", ".join(by_name) if by_name else "(no requests: section)")
                )
        kinds = {objective.kind for objective in self.objectives if objective.request is None}
        for kind in OBJECTIVE_METRICS:
            missing = kind.unmeasurable_with(self._traffic()) if kind in kinds and kind.unmeasurable_with else None
            if missing is not None:
                raise ValueError(f"objective '{kind.syntax}' {missing}")
        for objective in self.objectives:
            unmeasurable = objective.kind.unmeasurable_with
            if objective.request is not None and unmeasurable is not None:
                missing = unmeasurable(self._traffic([by_name[objective.request]]))
                if missing is not None:
                    raise ValueError(f"objective '{objective.metric}' on request '{objective.request}' {missing}")
        if self.load.locustfile is not None:
            open_stages = [stage.name for stage in self.stages if stage.open_model]
            if open_stages:
                raise ValueError(
                    f"load.locustfile runs users stages only; stage '{open_stages[0]}' sets arrival_rate_rps"
                )
            if self.requests is not None or self.payload.malformed_fraction > 0:
                raise ValueError(
                    "load.locustfile sends its own requests: remove requests: and payload.malformed_fraction"
                )
        with_bodies = [r for r in self.requests or [] if r.body_kinds]
        if self.payload.malformed_fraction > 0 and self.requests is not None and not with_bodies:
            raise ValueError("payload.malformed_fraction spoils request bodies, and no request has a body")
        for objective in self.objectives:
            for stage_name in objective.stages or []:
                if stage_name not in names:
                    raise ValueError(
                        f"objective '{objective.metric}' names stage '{stage_name}', which is not one of: "
                        + ", ".join(names)
                    )
        for index, stage in enumerate(self.stages):
            for fault in stage.faults:
                if not target.deploys:
                    *others, last = [name for name, kind in TARGET_KINDS.items() if kind.deploys]
                    raise ValueError(
                        f"stages[{index}].faults: the {self.target.kind} target's replicas are not the harness's to "
                        f"{fault.action} (use the {', '.join(others)} or {last} target)"
                    )
                if fault.action == "pause" and target.pause_unavailable is not None:
                    raise ValueError(
                        f"stages[{index}].faults: pause is not available on the {self.target.kind} target "
                        f"{target.pause_unavailable}"
                    )
        return self

    def _traffic(self, requests: list[RequestConfig] | None = None) -> Traffic:
        """What the load sends (of `requests`, default every one) that some objective metrics need."""
        sent = (self.requests or []) if requests is None else requests
        return Traffic(
            checks_answers=any(request.check.reads_answer for request in sent),
            sends_bad_input=self.payload.malformed_fraction > 0 or any(r.check.expects_bad_input for r in sent),
            streams=any(request.streams for request in sent),
        )

    @property
    def duration_s(self) -> float:
        return sum(stage.duration_s for stage in self.stages)


# --------------------------------------------------------------------------- loading


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not str(item).startswith(("function-", "constrained-", "union")):
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The scenario model whose keys the mapping at `loc` holds (list indexes skipped), or None."""
    model: type[BaseModel] = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for name, f in model.model_fields.items() if part in (name, f.alias)),
            None,
        )
        if field is None:
            return None
        found = _model_in(field.annotation)
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `list[Stage] | None`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """What to say of an unknown key: the closest known key ("did you mean"), else the keys allowed there."""
    model = _model_at(loc[:-1])
    if model is None:
        return "see docs/scenario.md for the keys"
    keys = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "expected one of: " + ", ".join(keys)


def _describe(problem: ErrorDetails, source: str) -> str:
    """One line for one problem of a scenario: the field, the value, what was expected."""
    where = _location(problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        return f"{source}: unknown key '{where}': {_unknown_key(problem['loc'])}"
    if problem["type"] == "missing":
        return f"{source}: field '{where}' is required"
    if where == "(top level)":
        # A check across sections (Scenario._cross_checks): its message names the fields itself.
        return f"{source}: {message}"
    value = problem.get("input")
    shown = "" if isinstance(value, dict | list) or value is None else f" = {_short(repr(value))}"
    return f"{source}: field '{where}'{shown}: {message}"


def _problems(error: ValidationError, source: str) -> tuple[str, ...]:
    """Every problem pydantic found, one line each, in the schema's order, without repeats."""
    return tuple(dict.fromkeys(_describe(problem, source) for problem in error.errors()))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_override(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set `a.b.c` in a nested mapping, creating sections as needed; a number indexes a list (`stages.0.users`)."""
    parts = dotted_key.split(".")
    if not all(parts):
        raise ConfigError(f"override '{dotted_key}': empty part in the dotted key (expected e.g. stages.0.users)")
    node: Any = data
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not re.fullmatch(r"[0-9]+", part) or int(part) >= len(node):
                raise ConfigError(
                    f"override '{dotted_key}': '{where}' is a list of {len(node)}; '{part}' is not one of its "
                    f"indexes (0 to {len(node) - 1})"
                    if node
                    else f"override '{dotted_key}': '{where}' is an empty list"
                )
            index = int(part)
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override '{dotted_key}': '{where}' is neither a section nor a list")


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    """Validate an already-loaded mapping into a Scenario, raising ConfigError with one clear line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        problems = _problems(error, source)
        raise ConfigError(problems[0], problems=problems) from error


# Deeper than any scenario needs; PyYAML's composer recurses once per level, so this also bounds the stack.
MAX_YAML_DEPTH = 50


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that a scenario file must not contain."""


class ScenarioLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (otherwise the last one wins silently), aliases (a few
    lines of anchors can expand to gigabytes) and nesting deeper than MAX_YAML_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = cast(yaml.Mark | None, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem=f"alias *{event.anchor}: YAML aliases are not allowed in scenario files (write the value out)",
                problem_mark=mark,
            )
        if self._depth >= MAX_YAML_DEPTH:
            raise _Refused(problem=f"nested deeper than {MAX_YAML_DEPTH} levels", problem_mark=mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in first_line:
                raise _Refused(
                    problem=f"duplicate key {_short(repr(key))} (first on line {first_line[key]})",
                    problem_mark=key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _where(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    return "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document with no duplicate keys, aliases or deep nesting, or a one-line ConfigError naming `source`."""
    try:
        return yaml.load(text, Loader=ScenarioLoader)
    except _Refused as error:
        raise ConfigError(f"{source}: {_where(error)}{error.problem}") from error
    except yaml.MarkedYAMLError as error:
        problem = " ".join(f"{error.context or ''} {error.problem or ''}".split())
        raise ConfigError(f"{source}: not valid YAML ({_where(error)}{problem})") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(error).split())})") from error
    except Exception as error:
        # PyYAML's constructors raise ValueError, KeyError, IndexError, AttributeError ... for explicit tags
        # they cannot apply (`!!int x`, `!!int ''`, `!!bool maybe`, `!!timestamp 2020-13-45`).
        raise ConfigError(
            f"{source}: not valid YAML (a value cannot be converted to its tag: {type(error).__name__} {error})"
        ) from error


def read_yaml(path: Path) -> Any:
    """A scenario file's YAML document (UTF-8, then as `parse_yaml`), or a one-line ConfigError."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read scenario file ({error.strerror})") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); save it as UTF-8"
        ) from error
    return parse_yaml(text, str(path))


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_scenario(scenario: Scenario) -> str:
    """The scenario as YAML that `read_yaml` accepts again (no aliases, Kubernetes spelling for autoscaling),
    with its secrets redacted (harness.redact): what a run directory keeps."""
    data = redact_scenario_data(scenario.model_dump(mode="json", by_alias=True))
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


def check_machine(scenario: Scenario, source: str) -> None:
    """Reject what this machine cannot do (load.cpus it does not have); not part of the schema, so a run
    directory recorded elsewhere still re-renders here."""
    cpus = os.cpu_count() or 1
    missing = [cpu for cpu in scenario.load.cpus or [] if cpu >= cpus]
    if missing:
        raise ConfigError(
            f"{source}: field 'load.cpus' = {scenario.load.cpus}: this machine has no CPU "
            f"{', '.join(map(str, missing))} (it has CPUs 0 to {cpus - 1})"
        )


def _against(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _request_against(base: Path, request: RequestConfig) -> RequestConfig:
    """The request with its files resolved against the scenario's folder: the body file, the data set, the files
    folder, an openai request's prompts and, when it has neither rows' folder to be relative to, the files its
    body names."""
    update: dict[str, Any] = {
        name: _against(base, getattr(request, name))
        for name in ("body_file", "dataset", "files")
        if getattr(request, name) is not None
    }
    if request.dataset is None and request.files is None:
        # Without rows, no placeholder either (the schema checks): every file path is literal.
        if request.body_binary is not None:
            update["body_binary"] = _file_against(base, request.body_binary)
        if request.multipart is not None:
            update["multipart"] = {
                name: _file_against(base, part) if isinstance(part, FileInput) else part
                for name, part in request.multipart.items()
            }
    if request.openai is not None and request.openai.prompts is not None:
        update["openai"] = request.openai.model_copy(update={"prompts": _against(base, request.openai.prompts)})
    return request.model_copy(update=update)


def _file_against(base: Path, file: FileInput) -> FileInput:
    return file.model_copy(update={"file": str(_against(base, Path(file.file)))})


def load_scenario(path: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read a scenario YAML file, apply dotted-key overrides, validate once; relative paths resolve against the file."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; expected a scenario mapping")
    return scenario_from_data(data, str(path), path.resolve().parent, overrides)


def scenario_from_data(data: Any, source: str, base: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """A scenario's plain data (a file's, or the command line's) with dotted-key overrides applied, validated once;
    relative paths resolve against `base`."""
    if isinstance(data, dict):
        for key, value in (overrides or {}).items():
            apply_override(data, key, value)
    scenario = parse_scenario(data, source)
    check_machine(scenario, source)
    service = scenario.service
    # `service.python` is not resolved: a venv's bin/python is a symlink that selects the venv by its name.
    service = service.model_copy(
        update={
            "path": None if service.path is None else _against(base, service.path),
            "model_store": None if service.model_store is None else _against(base, service.model_store.expanduser()),
            "python": None if service.python is None else base / service.python.expanduser(),
        }
    )
    payload = scenario.payload
    if payload.file is not None and not payload.file.is_absolute():
        payload = payload.model_copy(update={"file": (base / payload.file).resolve()})
    if scenario.load.locustfile is not None:
        load = scenario.load.model_copy(update={"locustfile": _against(base, scenario.load.locustfile)})
        scenario = scenario.model_copy(update={"load": load})
    tls = scenario.target.tls
    tls_files = {name: getattr(tls, name) for name in ("ca_bundle", "client_cert", "client_key")}
    tls = tls.model_copy(update={name: _against(base, path) for name, path in tls_files.items() if path is not None})
    scenario = scenario.model_copy(update={"target": scenario.target.model_copy(update={"tls": tls})})
    requests = None
    if scenario.requests is not None:
        requests = [_request_against(base, request) for request in scenario.requests]
    stages = [
        stage if stage.trace is None else stage.model_copy(update={"trace": _against(base, stage.trace)})
        for stage in scenario.stages
    ]
    return scenario.model_copy(update={"service": service, "payload": payload, "requests": requests, "stages": stages})
