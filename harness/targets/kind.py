"""kind (Kubernetes in Docker) clusters for the Kubernetes target: checked before anything is built, created (or
a named one reused) from charts/kind-config.yaml with a kubeconfig of its own, given the service image and
metrics-server, and deleted afterwards when this harness created it.

The `kind` and `docker` CLIs do the cluster work; metrics-server is applied through the Kubernetes API like the
chart, so no kubectl is needed. kind writes the cluster's credentials to `kubeconfig` (default
.cluster/kind-<name>.kubeconfig), never to the user's ~/.kube/config.

A cluster this harness creates is registered with the run's watchdog before `kind create` starts, so a harness
killed even by SIGKILL leaves none, and its owner is recorded in OWNERS_DIR (machine-wide): a later run that
finds a cluster of a harness that is gone deletes it rather than taking it for the user's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import DeployError
from harness.model import Leftover
from harness.processes import marked_env, owner_alive, owner_id
from harness.rundir import leftover_from_json, leftover_to_json
from harness.targets.helm import CHARTS_DIR, MODEL_SERVICE_CHART
from harness.targets.kubernetes_api import KubernetesApi

KIND_CONFIG = CHARTS_DIR / "kind-config.yaml"
METRICS_SERVER_MANIFEST = CHARTS_DIR / "metrics-server" / "components.yaml"
METRICS_API_SERVICE = "v1beta1.metrics.k8s.io"
# Who created which kind cluster, one JSON file per cluster name: machine-wide, like the clusters themselves.
OWNERS_DIR = Path(tempfile.gettempdir()) / "harness-kind-clusters"
_TAIL_CHARS = 1500
_INSTALL_HINT = (
    "make kind-setup builds kind and a node image here; elsewhere see kind.sigs.k8s.io/docs/user/quick-start"
)
# Docker's containerd image store: `docker save` of an image lists platforms whose content it does not hold, so
# `kind load docker-image` fails ("ctr: content digest ... not found", kind issue 3795); kind documents saving one
# platform (`docker image save --platform`, Docker >= 28) and `kind load image-archive` instead.
_CONTAINERD_STORE = "io.containerd.snapshotter"
_SAVE_PLATFORM_SINCE = 28

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]
# The label kind puts on a cluster's node containers.
NODE_LABEL = "io.x-k8s.kind.cluster"
LoadMethod = Literal["docker-image", "image-archive"]


def run_command(
    command: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in a process group of its own, capturing its output; DeployError when it cannot start or
    times out. Interrupted (SIGINT, SIGTERM), the whole group is killed: `kind create`'s own `docker run`
    children too, which would otherwise go on creating a node after the cluster was deleted."""
    try:
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
    except FileNotFoundError as error:
        raise DeployError(f"{command[0]}: not found on PATH", hint=_INSTALL_HINT) from error
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except BaseException as error:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        if isinstance(error, subprocess.TimeoutExpired):
            raise DeployError(f"{' '.join(command)}: no answer within {timeout_s:g} s") from error
        raise
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)


def remove_node_containers(
    name: str,
    run: Runner = run_command,
    sleep: Callable[[float], None] = time.sleep,
    settle_checks: int = 3,
    interval_s: float = 2.0,
) -> int:
    """Remove the node containers of kind cluster `name` that `kind delete` did not see: one whose creation the
    Docker daemon was still finishing for a `kind create` killed mid-way shows up after it. Done once
    `settle_checks` looks `interval_s` apart find none (at most 30 looks); returns how many were removed."""
    removed = quiet = 0
    for _ in range(30):
        found = run(["docker", "ps", "-aq", "--filter", f"label={NODE_LABEL}={name}"], 60).stdout.split()
        if found:
            run(["docker", "rm", "-f", "-v", *found], 120)
            removed += len(found)
            quiet = 0
        else:
            quiet += 1
            if quiet >= settle_checks:
                break
        sleep(interval_s)
    return removed


def metrics_server_manifests(path: Path = METRICS_SERVER_MANIFEST) -> list[dict[str, Any]]:
    """The metrics-server objects to apply, from the checked-in manifest."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def api_service_available(api_service: dict[str, Any] | None) -> bool:
    """Whether an APIService reports condition Available=True (its backend answers)."""
    conditions = ((api_service or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


# --------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class KindConfig:
    """What the harness reads from a kind cluster config: the NodePort that extraPortMappings publishes on
    127.0.0.1 (the load's route into the cluster), if any."""

    node_port: int | None

    @classmethod
    def read(cls, path: Path = KIND_CONFIG) -> KindConfig:
        document = yaml.safe_load(path.read_text()) or {}
        for node in document.get("nodes") or []:
            for mapping in node.get("extraPortMappings") or []:
                if mapping.get("listenAddress") == "127.0.0.1" and mapping.get("containerPort"):
                    return cls(node_port=int(mapping["containerPort"]))
        return cls(node_port=None)


def chart_min_version(chart_dir: Path = MODEL_SERVICE_CHART) -> tuple[int, int]:
    """The oldest Kubernetes (major, minor) the chart supports, from its Chart.yaml kubeVersion (">=1.30.0-0")."""
    constraint = str((yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}).get("kubeVersion", ""))
    match = re.fullmatch(r"\s*>=\s*v?(\d+)\.(\d+)\S*\s*", constraint)
    if not match:
        raise DeployError(f"{chart_dir / 'Chart.yaml'}: kubeVersion '{constraint}' is not of the form >=1.30")
    return int(match.group(1)), int(match.group(2))


def check_version(version: str, where: str, minimum: tuple[int, int]) -> None:
    """DeployError unless the Kubernetes `version` (v1.34.4) of `where` is one the charts support."""
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not match:
        raise DeployError(f"{where}: Kubernetes version '{version.strip()}' is not of the form v1.34.4")
    if (int(match.group(1)), int(match.group(2))) < minimum:
        raise DeployError(
            f"{where} runs Kubernetes {version.strip()}; the charts need >= {minimum[0]}.{minimum[1]}",
            hint="create the cluster from a newer node image (kind create cluster --image)",
        )


def load_method(driver_status: str, server_version: str) -> LoadMethod:
    """How to put a local image on the nodes with this Docker's image store; DeployError when no way is known."""
    if _CONTAINERD_STORE not in driver_status:
        return "docker-image"
    match = re.match(r"(\d+)\.", server_version.strip())
    if match and int(match.group(1)) >= _SAVE_PLATFORM_SINCE:
        return "image-archive"
    raise DeployError(
        f"Docker {server_version.strip()} stores images in containerd, where `kind load docker-image` fails "
        f"(kind issue 3795) and `docker image save --platform` needs Docker >= {_SAVE_PLATFORM_SINCE}",
        hint="turn off the containerd image store (daemon.json features.containerd-snapshotter: false) or "
        "upgrade Docker",
    )


def privileged_failure(output: str) -> str:
    """Docker's reason a privileged container could not start, in one line; a missing capability named."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("Run 'docker")]
    reason = lines[-1] if lines else "no output"
    if "unable to apply caps" in reason:
        bounding = _capability_bounding_set()
        missing = [name for bit, name in _CAPABILITIES.items() if bounding is not None and not bounding >> bit & 1]
        if missing:
            reason += (
                f" (this machine's capability bounding set lacks {', '.join(missing)}, which --privileged asks for)"
            )
    return reason


# Capabilities a host may drop that Docker's --privileged asks for (linux/capability.h numbers).
_CAPABILITIES = {
    21: "CAP_SYS_ADMIN",
    24: "CAP_SYS_RESOURCE",
    25: "CAP_SYS_TIME",
    12: "CAP_NET_ADMIN",
    16: "CAP_SYS_MODULE",
}


def _capability_bounding_set() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return None


# --------------------------------------------------------------------------- owners of created clusters


def _owner_file(name: str) -> Path:
    return OWNERS_DIR / f"{name}.json"


def cluster_owner(name: str) -> dict[str, Any] | None:
    """The harness that created cluster `name` and has not deleted it yet ({"owner", "run_id", ...}), if any."""
    try:
        record = json.loads(_owner_file(name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "owner" in record else None


def _forget_owner(name: str) -> None:
    with contextlib.suppress(OSError):
        _owner_file(name).unlink()


def delete_cluster_of(resource: Leftover, run_id: str) -> list[str]:
    """A dead run's kind cluster, as its watchdog registered it (harness.cleanup); one line per thing done."""
    name = str(resource.cluster)
    command = [resource.kind_binary or "kind", "delete", "cluster", "--name", name]
    if resource.kubeconfig:
        command += ["--kubeconfig", resource.kubeconfig]
    result = run_command(command, 300)
    if result.returncode != 0:
        return [f"could not delete kind cluster {name}: {(result.stderr or result.stdout).strip()[-_TAIL_CHARS:]}"]
    late = remove_node_containers(name)
    _forget_owner(name)
    return [f"deleted kind cluster {name}" + (f" ({late} node container(s) created late removed)" if late else "")]


def leaked_clusters(live_runs: set[str]) -> list[tuple[str, Leftover]]:
    """Clusters recorded in OWNERS_DIR whose harness is gone and whose run has no live watchdog either, with their
    run ids."""
    leaked = []
    with contextlib.suppress(OSError):
        for path in sorted(OWNERS_DIR.glob("*.json")):
            record = cluster_owner(path.stem)
            if record is None or owner_alive(record["owner"]) or record.get("run_id") in live_runs:
                continue
            leftover = leftover_from_json({**record, "kind": "kind", "cluster": path.stem})
            if leftover is not None:
                leaked.append((str(record.get("run_id")), leftover))
    return leaked


# --------------------------------------------------------------------------- the cluster


class KindCluster:
    """One kind cluster: checked, created (or reused when it exists), given images and metrics-server, and
    deleted at the end when this object created it."""

    def __init__(
        self,
        name: str,
        *,
        kubeconfig: Path | None = None,
        node_image: str | None = None,
        config: Path = KIND_CONFIG,
        keep: bool = False,
        run_id: str = "",
        on_create: Callable[[Leftover], None] | None = None,
        run: Runner | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.kubeconfig = (kubeconfig or Path(".cluster") / f"kind-{name}.kubeconfig").absolute()
        self.node_image = node_image
        self.config = config
        self.keep = keep
        self.run_id = run_id
        self._on_create = on_create or (lambda resource: None)
        # kind and docker children bear the run's mark: the watchdog of a killed harness stops a `kind create`
        # still under way before it deletes the cluster.
        self._run = run or functools.partial(run_command, env=marked_env(os.environ, run_id) if run_id else None)
        self._clock = clock
        self._sleep = sleep
        self._load_method: LoadMethod | None = None
        self.created = False

    def _command(self, command: list[str], *, timeout_s: float = 120, what: str) -> str:
        result = self._run(command, timeout_s)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-_TAIL_CHARS:]
            raise DeployError(f"kind cluster {self.name}: {what} failed ({' '.join(command)}): {output}")
        return result.stdout

    def _kind(self, *args: str, timeout_s: float = 120, what: str) -> str:
        return self._command(["kind", *args], timeout_s=timeout_s, what=what)

    def exists(self) -> bool:
        clusters = self._kind("get", "clusters", what="listing clusters").split()
        return self.name in clusters

    @property
    def control_plane(self) -> str:
        """The control-plane node's container (kind names it <cluster>-control-plane)."""
        return f"{self.name}-control-plane"

    # ------------------------------------------------------------------ preflight

    def preflight(self, *, node_port: int | None) -> None:
        """Before anything is built: kind and docker work, the image load path suits Docker's image store, and
        the cluster (the named one, or the node image a new one would run) has a Kubernetes the charts support.
        With `node_port`, a reused cluster must publish it on 127.0.0.1. DeployError, one line, otherwise."""
        self._command(["kind", "version"], timeout_s=30, what="running kind")
        self.load_method()
        minimum = chart_min_version()
        if self.exists():
            self._check_reusable()
            version = self._command(
                ["docker", "exec", self.control_plane, "cat", "/kind/version"], what="reading its Kubernetes version"
            )
            check_version(version, f"kind cluster {self.name}", minimum)
            if node_port is not None:
                self.host_port(node_port)
        elif self.node_image:
            self._command(
                ["docker", "image", "inspect", "--format", "{{.Id}}", self.node_image],
                what=f"finding node image {self.node_image} on this machine (make kind-setup builds one)",
            )
            # kind runs its nodes as privileged containers: this is where a Docker that cannot run one says so.
            result = self._run(
                ["docker", "run", "--rm", "--privileged", "--entrypoint", "cat", self.node_image, "/kind/version"], 120
            )
            if result.returncode != 0:
                raise DeployError(
                    f"Docker cannot run kind's node {self.node_image} as a privileged container: "
                    f"{privileged_failure(result.stderr or result.stdout)}",
                    hint="kind needs privileged containers (a rootless or capability-restricted Docker cannot host it)",
                )
            check_version(result.stdout, f"node image {self.node_image}", minimum)

    def load_method(self) -> LoadMethod:
        """How images reach the nodes with the Docker in use (asked once)."""
        if self._load_method is None:
            info = self._command(
                ["docker", "info", "--format", "{{json .DriverStatus}}|{{.ServerVersion}}"],
                what="asking the Docker daemon (docker info)",
            )
            driver_status, _, server_version = info.rpartition("|")
            self._load_method = load_method(driver_status, server_version)
        return self._load_method

    def _check_reusable(self) -> None:
        """An existing cluster is the user's unless a harness of this machine created it: one still running is
        another run's (an error), one that is gone leaked it (deleted by ensure)."""
        record = cluster_owner(self.name)
        if record is not None and record["owner"] != owner_id() and owner_alive(record["owner"]):
            raise DeployError(
                f"kind cluster {self.name} was created by run {record.get('run_id')} of a harness that is still "
                "running, which will delete it",
                hint="name another cluster (target.kubernetes.kind_cluster, make ... KIND_CLUSTER=...)",
            )

    # ------------------------------------------------------------------ lifecycle

    def leftover_resource(self) -> Leftover:
        """What the watchdog needs to delete this cluster if the harness dies (harness.cleanup)."""
        return Leftover(
            kind="kind", cluster=self.name, kubeconfig=str(self.kubeconfig), kind_binary=shutil.which("kind")
        )

    def ensure(self) -> bool:
        """Create the cluster unless it exists (then write its kubeconfig); True when this call created it. A
        cluster left by a harness that is gone is deleted and created anew."""
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        if self.exists():
            self._check_reusable()
            record = cluster_owner(self.name)
            if record is None or record["owner"] == owner_id():
                self.kubeconfig.write_text(
                    self._kind("get", "kubeconfig", "--name", self.name, what="reading the kubeconfig")
                )
                self.kubeconfig.chmod(0o600)
                return False
            self._kind(*self._delete_args(), timeout_s=300, what="deleting a cluster a harness that is gone left")
            _forget_owner(self.name)
        # Registered before it exists: a harness killed during `kind create` leaves no half-made cluster.
        self._on_create(self.leftover_resource())
        OWNERS_DIR.mkdir(parents=True, exist_ok=True)
        _owner_file(self.name).write_text(
            json.dumps({**leftover_to_json(self.leftover_resource()), "owner": owner_id(), "run_id": self.run_id})
        )
        self.created = True
        create = ["create", "cluster", "--name", self.name, "--config", str(self.config)]
        create += ["--kubeconfig", str(self.kubeconfig), "--wait", "180s"]
        if self.node_image:
            create += ["--image", self.node_image]
        self._kind(*create, timeout_s=600, what="creating the cluster")
        return True

    def host_port(self, node_port: int) -> int:
        """The 127.0.0.1 port that Docker publishes for `node_port` of the control-plane node."""
        output = self._command(
            ["docker", "port", self.control_plane, f"{node_port}/tcp"],
            what=f"finding the host port of NodePort {node_port}",
        )
        for line in output.splitlines():
            host, _, port = line.strip().rpartition(":")
            if host == "127.0.0.1" and port.isdigit():
                return int(port)
        raise DeployError(
            f"kind cluster {self.name} publishes NodePort {node_port} on no 127.0.0.1 port ({output.strip()!r})",
            hint=f"create the cluster from {KIND_CONFIG} (its extraPortMappings), or set "
            "target.kubernetes.load_route: port-forward",
        )

    def load_image(self, image: str) -> None:
        """Copy a local Docker image onto every node, so pods start without a registry."""
        what = f"loading image {image}"
        if self.load_method() == "docker-image":
            self._kind("load", "docker-image", image, "--name", self.name, timeout_s=900, what=what)
            return
        with tempfile.TemporaryDirectory(prefix="harness-kind-load-") as directory:
            archive = str(Path(directory) / "image.tar")
            platform = self._command(
                ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image], what=what
            ).strip()
            self._command(
                ["docker", "image", "save", "--platform", platform, "-o", archive, image], timeout_s=900, what=what
            )
            self._kind("load", "image-archive", archive, "--name", self.name, timeout_s=900, what=what)

    def install_metrics_server(self, api: KubernetesApi, timeout_s: float = 180) -> None:
        """Apply metrics-server (with --kubelet-insecure-tls) and wait until metrics.k8s.io answers."""
        for manifest in metrics_server_manifests():
            api.apply(manifest)
        deadline_s = self._clock() + timeout_s
        while not api_service_available(api.get("apiregistration.k8s.io/v1", "APIService", None, METRICS_API_SERVICE)):
            if self._clock() > deadline_s:
                raise DeployError(
                    f"metrics-server in kind cluster {self.name} not available within {timeout_s:g} s",
                    hint="kubectl -n kube-system logs deploy/metrics-server",
                )
            self._sleep(2.0)

    def _delete_args(self) -> list[str]:
        return ["delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig)]

    def delete(self) -> None:
        """Delete the cluster if this object created it and it is not to be kept; idempotent. A kept cluster is
        the user's from now on."""
        if not self.created:
            return
        if self.keep:
            _forget_owner(self.name)
            return
        self._kind(*self._delete_args(), timeout_s=300, what="deleting the cluster")
        remove_node_containers(self.name, self._run, self._sleep)
        _forget_owner(self.name)
        with contextlib.suppress(OSError):
            self.kubeconfig.unlink()
        self.created = False
