"""The Kubernetes API as the Kubernetes target uses it: a small protocol answering in the API server's own
JSON (dicts), its implementation over the official `kubernetes` client, and a local port-forward relay.

Every answer is the object exactly as the API server sends it, so the target's logic can be tested
against recorded API responses through a fake of this protocol; only this module imports `kubernetes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from harness import extras
from harness.errors import DeployError

FIELD_MANAGER = "harness"
# The groups every API server serves: failing to find or list one of their kinds is the server's trouble (busy,
# restarting), never "not served"; only an optional API (metrics.k8s.io, an aggregated or custom one) may be absent
# or down.
_BUILT_IN_GROUPS = frozenset(
    {
        "",
        "apps",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "networking.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
    }
)
# Answers a busy or restarting API server gives that the same read may not get a moment later.
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# A read (discovery, get, list) is tried this many times on a transient answer, 0.5 s then 1 s apart.
_READ_ATTEMPTS = 3
_RELAY_BUFFER_BYTES = 65536


def _retry_pause_s(attempt: int) -> float:
    """The pause before try `attempt + 1` of a read: 0.5 s, then 1 s."""
    return 0.5 * 2.0 ** (attempt - 1)


def _built_in(api_version: str) -> bool:
    return (api_version.split("/", 1)[0] if "/" in api_version else "") in _BUILT_IN_GROUPS


class KubernetesApiError(DeployError):
    """The API server refused a request; `status` is the HTTP status (404, 409, 422, ...)."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def status_message(body: str | bytes | None, fallback: str) -> str:
    """The `message` of a metav1.Status error body, else the body itself, else `fallback`."""
    if not body:
        return fallback
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()[:500] or fallback
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return fallback


class SocketLike(Protocol):
    """What the relay needs of a connection: a plain socket, or the client's port-forward socket."""

    def recv(self, size: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class KubernetesApi(Protocol):
    """The API calls the Kubernetes target makes; objects are API-server JSON as dicts."""

    def server_version(self) -> str:
        """gitVersion of the API server, e.g. "v1.33.1"."""
        ...

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        ...

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any] | None:
        """A List object (`items`), or None when the cluster does not serve this kind (e.g. no metrics-server)."""
        ...

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the harness's field manager; a field another manager owns with another value is
        never taken over: KubernetesApiError with status 409 naming that manager."""
        ...

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, grace_period_s: int | None = None
    ) -> bool:
        """Delete one object (dependents in the background; `grace_period_s` 0 kills a pod at once); False when
        it was already gone."""
        ...

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource."""
        ...

    def pod_log(self, namespace: str, pod: str, container: str, *, tail_lines: int, previous: bool) -> str: ...

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str, *, timeout_s: float = 5.0) -> str:
        """GET a path of a pod's port through the API server's pod proxy."""
        ...

    def open_port_forward(self, namespace: str, pod: str, port: int) -> SocketLike:
        """A new connection to the pod's port, tunnelled through the API server (kubectl port-forward)."""
        ...

    def follow_pod_log(self, namespace: str, pod: str, container: str) -> Iterator[str]:
        """A container's log lines as they are written, from the start, until the container ends."""
        ...

    def may(self, verb: str, group: str, resource: str, namespace: str | None, *, name: str = "") -> bool:
        """Whether the kubeconfig's user may do `verb` on `resource` ("pods", "pods/log") of API `group` ("" for
        the core group) in `namespace` (None: cluster-wide), as the API server answers a SelfSubjectAccessReview."""
        ...

    def served_resources(self, group_version: str) -> tuple[str, ...] | None:
        """The resource names an API group version serves ("pods", "pods/bentoml_requests"), by discovery; None
        when the cluster does not serve it (or its aggregated server is down)."""
        ...


# --------------------------------------------------------------------------- the official client


def _default_kubeconfig() -> Path | None:
    configured = os.environ.get("KUBECONFIG", "")
    # KUBECONFIG may list several files; the client reads the first one.
    first = configured.split(os.pathsep)[0] if configured else "~/.kube/config"
    path = Path(first).expanduser()
    return path if path.is_file() else None


class ClientKubernetesApi:
    """`KubernetesApi` over the official client: the dynamic client for objects, typed APIs for the rest."""

    def __init__(self, api_client: Any, port_forward_client: Any) -> None:
        from kubernetes import client

        self._client = client
        self._api_client = api_client
        self._dynamic_client: Any = None
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        # kubernetes.stream swaps call_api on the ApiClient for the duration of a call, so port-forwards get
        # their own ApiClient and a lock; REST calls in other threads never go through a websocket.
        self._port_forward_core = client.CoreV1Api(port_forward_client)
        self._port_forward_lock = threading.Lock()

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> ClientKubernetesApi:
        """Connect with a kubeconfig (given, $KUBECONFIG or ~/.kube/config), else the in-cluster service account."""
        extras.require("kubernetes", "the kubernetes target")
        from kubernetes import client, config

        config_file = kubeconfig or _default_kubeconfig()
        if config_file is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise DeployError(
                "no kubeconfig found (target.kubernetes.kubeconfig, $KUBECONFIG or ~/.kube/config) and not "
                "running inside a cluster",
                hint="set target.kubernetes.kubeconfig, or let the harness create a kind cluster "
                "(target.kubernetes.kind_cluster)",
            )

        def new_client() -> Any:
            if config_file is not None:
                return config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(config_file), context=context
                )
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)

        try:
            rest_client, port_forward_client = new_client(), new_client()
        except config.ConfigException as error:
            where = config_file or "the in-cluster service account"
            raise DeployError(
                f"cannot load the Kubernetes configuration from {where}"
                + (f" (context {context})" if context else "")
                + f": {error}",
                hint="check target.kubernetes.kubeconfig and target.kubernetes.context (kubectl config get-contexts)",
            ) from error
        return cls(rest_client, port_forward_client)

    @property
    def _dynamic(self) -> Any:
        # Created on first use: its constructor already asks the API server for /version and discovery.
        if self._dynamic_client is None:
            from kubernetes.dynamic import DynamicClient

            self._dynamic_client = self._read(
                "API discovery",
                lambda: DynamicClient(self._api_client),  # type: ignore[no-untyped-call]
            )
        return self._dynamic_client

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        dynamic = self._dynamic
        # A built-in kind exists on every cluster: not found, a busy server's discovery answer was lost (the client
        # then holds its group empty), so discovery is asked again.
        attempts = _READ_ATTEMPTS if _built_in(api_version) else 1
        not_found: ResourceNotFoundError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(_retry_pause_s(attempt))
                dynamic.resources.invalidate_cache()
            try:
                return self._read(
                    f"discovery of {kind} ({api_version})",
                    lambda: dynamic.resources.get(api_version=api_version, kind=kind),
                )
            except ResourceNotFoundError as error:
                not_found = error
        raise KubernetesApiError(
            f"the cluster does not serve {kind} ({api_version})",
            status=404,
            hint="install the API that provides it (a CRD or an aggregated API), or disable what renders it",
        ) from not_found

    def _read(self, action: str, function: Callable[[], Any]) -> Any:
        """`_call` for a request that changes nothing, tried again on a transient answer or a lost connection."""
        for attempt in range(1, _READ_ATTEMPTS):
            try:
                return self._call(action, function)
            except KubernetesApiError as error:
                if error.status not in _TRANSIENT_STATUSES:
                    raise
            except DeployError:
                pass
            time.sleep(_retry_pause_s(attempt))
        return self._call(action, function)

    def _call(self, action: str, function: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return function()
        except ApiException as error:
            status = int(error.status or 0)
            message = status_message(error.body, f"HTTP {status} {error.reason}")
            raise KubernetesApiError(f"{action}: {message}", status=status) from error
        except (HTTPError, OSError) as error:
            raise DeployError(
                f"{action}: cannot reach the Kubernetes API server ({error})",
                hint="check the cluster is running and the kubeconfig context points at it",
            ) from error

    def server_version(self) -> str:
        info = self._call("GET /version", lambda: self._client.VersionApi(self._api_client).get_code())
        return str(info.git_version)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        resource = self._resource(api_version, kind)
        try:
            found = self._read(f"get {kind} {name}", lambda: resource.get(name=name, namespace=namespace))
        except KubernetesApiError as error:
            if error.status == 404:
                return None
            raise
        return dict(found.to_dict())

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any] | None:
        # None only for an optional API: a built-in kind that cannot be listed is an error, never an empty answer
        # (`harness cleanup` would report nothing to clean up).
        optional = not _built_in(api_version)
        try:
            resource = self._resource(api_version, kind)
        except KubernetesApiError:
            if optional:
                return None
            raise
        try:
            found = self._read(f"list {kind}", lambda: resource.get(namespace=namespace, label_selector=label_selector))
        except KubernetesApiError as error:
            # An aggregated API (metrics.k8s.io) that is registered but down answers 503.
            if optional and error.status in (404, 503):
                return None
            raise
        return dict(found.to_dict())

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        namespace = manifest["metadata"].get("namespace")
        created = self._call(
            f"create {manifest['kind']} {manifest['metadata']['name']}",
            lambda: resource.create(body=manifest, namespace=namespace),
        )
        return dict(created.to_dict())

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        metadata = manifest["metadata"]
        applied = self._call(
            f"apply {manifest['kind']} {metadata['name']}",
            lambda: resource.server_side_apply(
                body=manifest,
                name=metadata["name"],
                namespace=metadata.get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=False,
            ),
        )
        return dict(applied.to_dict())

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, grace_period_s: int | None = None
    ) -> bool:
        resource = self._resource(api_version, kind)
        options = {} if grace_period_s is None else {"grace_period_seconds": grace_period_s}
        try:
            self._call(
                f"delete {kind} {name}",
                lambda: resource.delete(name=name, namespace=namespace, propagation_policy="Background", **options),
            )
        except KubernetesApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self._call(
            f"scale Deployment {deployment}",
            lambda: self._apps.patch_namespaced_deployment_scale(
                deployment, namespace, {"spec": {"replicas": replicas}}
            ),
        )

    def pod_log(self, namespace: str, pod: str, container: str, *, tail_lines: int, previous: bool) -> str:
        try:
            text = self._call(
                f"logs of pod {pod}",
                lambda: self._core.read_namespaced_pod_log(
                    pod, namespace, container=container, tail_lines=tail_lines, previous=previous
                ),
            )
        except KubernetesApiError as error:
            # 400: no previous container yet, or the container has not started.
            if error.status in (400, 404):
                return ""
            raise
        return str(text)

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str, *, timeout_s: float = 5.0) -> str:
        def get() -> bytes:
            response: Any = self._core.connect_get_namespaced_pod_proxy_with_path(
                f"{pod}:{port}", namespace, path.lstrip("/"), _preload_content=False, _request_timeout=timeout_s
            )
            # The body is read here, inside _call: a read that times out mid-body (a busy API server) raises
            # urllib3's own error, which must become a DeployError like any other unreachable answer.
            try:
                return bytes(response.data)
            finally:
                response.release_conn()

        body = self._call(f"GET pod {pod}:{port}{path} through the API server proxy", get)
        return bytes(body).decode("utf-8", errors="replace")

    def follow_pod_log(self, namespace: str, pod: str, container: str) -> Iterator[str]:
        response = self._call(
            f"following the log of pod {pod}",
            lambda: self._core.read_namespaced_pod_log(
                pod, namespace, container=container, follow=True, _preload_content=False
            ),
        )
        pending = b""
        try:
            for chunk in response.stream(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
        finally:
            response.release_conn()
        if pending:
            yield pending.decode("utf-8", errors="replace")

    def may(self, verb: str, group: str, resource: str, namespace: str | None, *, name: str = "") -> bool:
        kind, _, subresource = resource.partition("/")
        client = self._client
        attributes = client.V1ResourceAttributes(
            verb=verb, group=group, resource=kind, subresource=subresource, name=name, namespace=namespace
        )
        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        )
        authorization = client.AuthorizationV1Api(self._api_client)
        review = self._call(
            f"SelfSubjectAccessReview of {verb} {resource}",
            lambda: authorization.create_self_subject_access_review(body),
        )
        return bool(review.status.allowed)

    def served_resources(self, group_version: str) -> tuple[str, ...] | None:
        path = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"

        def get() -> Any:
            method, url, headers, _, _ = self._api_client.param_serialize(
                method="GET", resource_path=path, auth_settings=["BearerToken"]
            )
            response = self._api_client.call_api(method, url, header_params=headers)
            response.read()
            return response

        response = self._call(f"discovery of {group_version}", get)
        # An aggregated API that is registered but down answers 503.
        if response.status in (404, 503):
            return None
        if response.status >= 400:
            message = status_message(response.data, f"HTTP {response.status}")
            raise KubernetesApiError(f"discovery of {group_version}: {message}", status=int(response.status))
        listed = json.loads(response.data)
        return tuple(str(resource["name"]) for resource in listed.get("resources") or [])

    def open_port_forward(self, namespace: str, pod: str, port: int) -> SocketLike:
        from kubernetes.stream import portforward

        with self._port_forward_lock:
            forward = self._call(
                f"port-forward to pod {pod}:{port}",
                lambda: portforward(
                    self._port_forward_core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
                ),
            )
        sock: SocketLike = forward.socket(port)
        return sock


# --------------------------------------------------------------------------- port-forward relay


class PortForwardRelay:
    """`kubectl port-forward` for one pod: listens on 127.0.0.1 and tunnels each accepted connection
    through its own stream from `connect` (one API-server port-forward per TCP connection)."""

    def __init__(self, connect: Callable[[], SocketLike], name: str) -> None:
        self._connect = connect
        self.name = name
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._listener.listen(128)
        # A blocked accept() does not wake when another thread closes the socket; poll the stop flag instead.
        self._listener.settimeout(0.25)
        self._thread = threading.Thread(target=self._accept, name=f"port-forward-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every tunnelled connection; idempotent."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            connections = list(self._open)
            self._open.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by stop()
            client.settimeout(None)
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        try:
            upstream = self._connect()
        except Exception as error:  # the API server refused: the local client sees a closed connection
            self.errors.append(f"{self.name}: {error}")
            client.close()
            return
        with self._lock:
            if self._stopped.is_set():
                client.close()
                upstream.close()
                return
            self._open.update((client, upstream))
        peers = {client.fileno(): (client, upstream), upstream.fileno(): (upstream, client)}
        with selectors.DefaultSelector() as selector:
            selector.register(client.fileno(), selectors.EVENT_READ)
            selector.register(upstream.fileno(), selectors.EVENT_READ)
            try:
                while not self._stopped.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        source, target = peers[int(key.fd)]
                        data = source.recv(_RELAY_BUFFER_BYTES)
                        if not data:
                            return
                        target.sendall(data)
            except (OSError, ValueError):
                return  # either side went away
            finally:
                with self._lock:
                    self._open.discard(client)
                    self._open.discard(upstream)
                for connection in (client, upstream):
                    with contextlib.suppress(OSError):
                        connection.close()
