"""harness.targets.kubernetes_api: the official client adapter over real HTTP against `FakeApiServer` (an HTTP
server on 127.0.0.1 answering recorded API responses, because no real API server can run here), the
Status-message parsing, and the port-forward relay with real sockets."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubernetes_fakes import FIXTURES, fixture

from harness.errors import DeployError
from harness.targets.kubernetes_api import (
    FIELD_MANAGER,
    ClientKubernetesApi,
    KubernetesApiError,
    PortForwardRelay,
    status_message,
)

POD = "model-service-6d4cf56db6-2xk9p"
STALLED_POD = "model-service-6d4cf56db6-stall"
METRICS_PAGE = (Path(__file__).parents[1] / "metrics" / "fixtures" / "bentoml_metrics.txt").read_text()


def api_resource(name: str, kind: str, namespaced: bool, verbs: list[str]) -> dict[str, Any]:
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}


ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
DISCOVERY = {
    "/api": {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "172.18.0.2:6443"}],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            api_resource(
                "namespaces", "Namespace", False, ["create", "delete", "get", "list", "patch", "update", "watch"]
            ),
            api_resource("pods", "Pod", True, ALL_VERBS),
            api_resource("pods/log", "Pod", True, ["get"]),
            api_resource("pods/proxy", "PodProxyOptions", True, ["create", "delete", "get", "patch", "update"]),
            api_resource("events", "Event", True, ALL_VERBS),
        ],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [
            api_resource("deployments", "Deployment", True, ALL_VERBS),
            api_resource("deployments/scale", "Scale", True, ["get", "patch", "update"]),
        ],
    },
}
NOT_FOUND = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "reason": "NotFound",
    "code": 404,
}


class FakeApiServer(http.server.BaseHTTPRequestHandler):
    """Answers the requests the adapter makes with recorded API-server responses; records every request."""

    requests: ClassVar[list[tuple[str, str, dict[str, list[str]], dict[str, str], bytes]]] = []
    # Set when a test is done with the stalled pod's answer.
    release: ClassVar[threading.Event] = threading.Event()
    # How many more lists of namespaces a busy API server answers 503 to.
    busy_lists: ClassVar[int] = 0

    def _answer(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append((method, url.path, query, dict(self.headers), body))
        # The API server decodes the path (a pod proxy name arrives as POD%3A3000) and ignores a trailing slash.
        path = urllib.parse.unquote(url.path).rstrip("/") or "/"
        if method == "GET" and path == "/version":
            return self._answer(200, fixture("version.json"))
        if method == "GET" and path in DISCOVERY:
            return self._answer(200, DISCOVERY[path])
        if method == "GET" and path == "/api/v1/namespaces":
            if FakeApiServer.busy_lists > 0:
                FakeApiServer.busy_lists -= 1
                return self._answer(503, dict(NOT_FOUND, code=503, reason="ServiceUnavailable", message="busy"))
            return self._answer(200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": []})
        if method == "GET" and path == "/api/v1/namespaces/harness":
            return self._answer(200, fixture("namespace_active.json"))
        if method == "PATCH" and path == "/api/v1/namespaces/harness":
            return self._answer(200, json.loads(body))
        if method == "GET" and path == "/api/v1/namespaces/harness/pods":
            return self._answer(200, fixture("pods_ready.json"))
        if method == "GET" and path == f"/api/v1/namespaces/harness/pods/{POD}/log":
            if query.get("previous") == ["true"]:
                return self._answer(200, (FIXTURES / "crash_loop_previous.log").read_bytes(), "text/plain")
            status = dict(NOT_FOUND, code=400, reason="BadRequest", message="container not started")
            return self._answer(400, status)
        if method == "GET" and path == f"/api/v1/namespaces/harness/pods/{POD}:3000/proxy/metrics":
            return self._answer(200, METRICS_PAGE.encode(), "text/plain; version=0.0.4")
        if method == "GET" and path == f"/api/v1/namespaces/harness/pods/{STALLED_POD}:3000/proxy/metrics":
            # Headers and half the page, then nothing until the test lets go: a read that times out mid-body.
            data = METRICS_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.release.wait(30)
            return None
        if method == "PATCH" and path == "/apis/apps/v1/namespaces/harness/deployments/model-service/scale":
            return self._answer(403, fixture("status_403_forbidden.json"))
        return self._answer(404, dict(NOT_FOUND, message=f'"{path}" not found'))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, *args: Any) -> None:
        pass


def write_kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "recorded", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "recorded", "context": {"cluster": "recorded", "user": "tester"}}],
                "current-context": "recorded",
            }
        )
    )
    return path


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientKubernetesApi]:
    # The dynamic client caches discovery in the temp directory; keep this test's cache to itself.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    FakeApiServer.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ClientKubernetesApi.connect(write_kubeconfig(tmp_path / "kubeconfig", int(server.server_address[1])))
    finally:
        server.shutdown()
        server.server_close()


def test_server_version(api: ClientKubernetesApi) -> None:
    assert api.server_version() == "v1.33.1"


def test_get_and_list_return_api_server_json(api: ClientKubernetesApi) -> None:
    namespace = api.get("v1", "Namespace", None, "harness")
    assert namespace == fixture("namespace_active.json")
    assert api.get("v1", "Namespace", None, "absent") is None
    listed = api.list("v1", "Pod", "harness", "harness.dev/run-id=20250301T120000Z-digits-autoscale")
    assert listed is not None and [p["metadata"]["name"] for p in listed["items"]] == [
        "model-service-6d4cf56db6-2xk9p",
        "model-service-6d4cf56db6-q8v4m",
    ]
    (request,) = [r for r in FakeApiServer.requests if r[1] == "/api/v1/namespaces/harness/pods"]
    assert request[2]["labelSelector"] == ["harness.dev/run-id=20250301T120000Z-digits-autoscale"]
    # A kind the cluster does not serve (no metrics-server): None, not an error.
    assert api.list("metrics.k8s.io/v1beta1", "PodMetrics", "harness") is None


def test_apply_is_a_server_side_apply_patch_that_never_forces(api: ClientKubernetesApi) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "harness", "labels": {"a": "b"}}}
    assert api.apply(manifest)["metadata"]["labels"] == {"a": "b"}
    (request,) = [r for r in FakeApiServer.requests if r[0] == "PATCH"]
    _, _, query, headers, body = request
    assert headers["Content-Type"] == "application/apply-patch+yaml"
    # Another manager's field is never taken over: the API server answers 409 instead.
    assert query["fieldManager"] == [FIELD_MANAGER] and query["force"] == ["false"]
    assert json.loads(body) == manifest


def test_delete_of_a_missing_object_is_false(api: ClientKubernetesApi) -> None:
    assert api.delete("v1", "Pod", "harness", "gone") is False
    (request,) = [r for r in FakeApiServer.requests if r[0] == "DELETE"]
    assert request[2]["propagationPolicy"] == ["Background"]


def test_pod_log_and_proxy(api: ClientKubernetesApi) -> None:
    assert "FileNotFoundError" in api.pod_log("harness", POD, "model-service", tail_lines=12, previous=True)
    # No previous container: the API server answers 400, which is an empty log, not an error.
    assert api.pod_log("harness", POD, "model-service", tail_lines=12, previous=False) == ""
    assert api.pod_proxy_get("harness", POD, 3000, "/metrics") == METRICS_PAGE


def test_a_proxy_answer_that_stalls_mid_body_is_a_deploy_error(api: ClientKubernetesApi) -> None:
    """A busy API server that sends the headers and then stalls: the read timeout surfaces as a HarnessError, which
    the metrics collector records as a failed scrape, never as urllib3's own error that would stop it."""
    FakeApiServer.release.clear()
    try:
        with pytest.raises(DeployError, match=f"GET pod {STALLED_POD}:3000/metrics through the API server proxy"):
            api.pod_proxy_get("harness", STALLED_POD, 3000, "/metrics", timeout_s=0.3)
    finally:
        FakeApiServer.release.set()


def test_a_busy_api_servers_503_to_a_list_is_asked_again(api: ClientKubernetesApi) -> None:
    FakeApiServer.busy_lists = 1
    listed = api.list("v1", "Namespace", None, "harness.dev/owner")
    assert listed is not None and listed["items"] == []
    assert len([r for r in FakeApiServer.requests if r[1] == "/api/v1/namespaces"]) == 2


def test_a_built_in_kind_that_cannot_be_listed_is_an_error_not_an_empty_answer(api: ClientKubernetesApi) -> None:
    """Only an optional API (metrics.k8s.io) that is down lists as None; a cluster that cannot list its namespaces
    must not make `harness cleanup` report nothing to clean up."""
    FakeApiServer.busy_lists = 3
    try:
        with pytest.raises(KubernetesApiError) as raised:
            api.list("v1", "Namespace", None, "harness.dev/owner")
    finally:
        FakeApiServer.busy_lists = 0
    assert raised.value.status == 503
    assert len([r for r in FakeApiServer.requests if r[1] == "/api/v1/namespaces"]) == 3


def test_api_errors_carry_the_status_message(api: ClientKubernetesApi) -> None:
    with pytest.raises(KubernetesApiError) as raised:
        api.scale("harness", "model-service", 3)
    assert raised.value.status == 403
    assert 'cannot list resource "pods" in API group "" in the namespace "harness"' in raised.value.message


def test_unreachable_api_server_is_a_deploy_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ClientKubernetesApi.connect(write_kubeconfig(tmp_path / "kubeconfig", port))
    with pytest.raises(DeployError, match="cannot reach the Kubernetes API server"):
        client.server_version()


def test_missing_kubeconfig_and_unknown_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(DeployError, match="no kubeconfig found"):
        ClientKubernetesApi.connect()
    with pytest.raises(DeployError, match="context nowhere"):
        ClientKubernetesApi.connect(write_kubeconfig(tmp_path / "kubeconfig", 1), "nowhere")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps(fixture("status_422_invalid.json")), "must be less than or equal to 1800"),
        ("plain text error\n", "plain text error"),
        (b"", "fallback"),
        (json.dumps({"kind": "Status"}), "fallback"),
    ],
)
def test_status_message(body: str | bytes, expected: str) -> None:
    assert expected in status_message(body, "fallback")


# --------------------------------------------------------------------------- port-forward relay

# How long a test waits on the relay's threads to pass data or close a connection: they take milliseconds, but
# other lanes of `make test` load the machine, and the relay's speed is not what these tests check.
RELAY_WAIT_S = 30


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1 standing in for the pod's port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data.upper())

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_relay_tunnels_concurrent_connections_each_through_its_own_stream(echo_port: int) -> None:
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        upstream = socket.create_connection(("127.0.0.1", echo_port))
        opened.append(upstream)
        return upstream

    relay = PortForwardRelay(connect, "pod-a")
    relay.start()
    try:
        clients = [socket.create_connection(("127.0.0.1", relay.port), timeout=RELAY_WAIT_S) for _ in range(3)]
        payload = b"x" * 200_000
        for index, client in enumerate(clients):
            client.sendall(b"hello %d|" % index + payload)
        for index, client in enumerate(clients):
            expected = (b"hello %d|" % index + payload).upper()
            received = b""
            while len(received) < len(expected):
                received += client.recv(65536)
            assert received == expected
        assert len(opened) == 3
        assert relay.base_url == f"http://127.0.0.1:{relay.port}"
    finally:
        relay.stop()
    for client in clients:
        client.settimeout(RELAY_WAIT_S)
        assert client.recv(10) == b""  # closed by stop()
        client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=1)


def test_relay_closes_the_local_connection_when_the_tunnel_cannot_open() -> None:
    def refuse() -> socket.socket:
        raise KubernetesApiError('pods "gone" not found', status=404)

    relay = PortForwardRelay(refuse, "gone")
    relay.start()
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=RELAY_WAIT_S) as client:
            assert client.recv(10) == b""
        assert relay.errors and "not found" in relay.errors[0]
    finally:
        relay.stop()
