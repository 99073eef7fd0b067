"""A fake of harness.targets.kubernetes_api.KubernetesApi for tests: no API server can run on this machine.

`FakeKubernetesApi` keeps applied and created objects in a dict (so apply -> list -> delete behaves like a
server), answers the kinds given in `recorded` with recorded API responses (JSON fixtures in
fixtures/kubernetes/, one per call, the last repeated), and logs every call so tests can assert what the
target asked for. `FakeClock` is the injected clock whose `sleep` advances time instantly; `fixture` and `pods` read the
recorded responses.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.targets.kubernetes_api import KubernetesApiError, SocketLike, status_message

FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
# What the recorded fixtures hold: the image the pods run and their names.
IMAGE = "digits-classifier:20250301"
POD_1, POD_2, POD_3 = (
    "model-service-6d4cf56db6-2xk9p",
    "model-service-6d4cf56db6-q8v4m",
    "model-service-6d4cf56db6-w7t2h",
)
CRASH_LOG = (FIXTURES / "crash_loop_previous.log").read_text()


def fixture(name: str) -> dict[str, Any]:
    """A recorded API response."""
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def pods(name: str) -> list[dict[str, Any]]:
    """The pods of a recorded PodList."""
    return list(fixture(name)["items"])


def no_logs(pod: str, container: str, previous: bool) -> str:
    raise AssertionError("no log should be read")


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    """A label selector of `key=value`, `key!=value` and `key` (exists) requirements, as the API server reads it."""
    if not selector:
        return True
    for requirement in selector.split(","):
        if "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = requirement.split("=", 1)
            if labels.get(key) != value:
                return False
        elif requirement not in labels:
            return False
    return True


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self, start_s: float = 1_740_830_400.0) -> None:
        self.now_s = start_s
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now_s += seconds


class FakeKubernetesApi:
    """An in-memory stand-in for the API server, fed with recorded responses."""

    def __init__(
        self,
        *,
        version: str = "v1.33.1",
        recorded: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
        gets: dict[tuple[str, str, str], list[dict[str, Any] | None]] | None = None,
        logs: dict[tuple[str, bool], str] | None = None,
        not_served: set[str] | None = None,
        proxy_pages: dict[str, str] | None = None,
        apply_errors: dict[str, dict[str, Any]] | None = None,
        port_forward_to: tuple[str, int] | None = None,
        denied: set[tuple[str, str, str]] | None = None,
        served: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.version = version
        self.recorded = {key: list(value) for key, value in (recorded or {}).items()}
        self.gets = {key: list(value) for key, value in (gets or {}).items()}
        self.logs = logs or {}
        self.not_served = not_served or set()
        self.proxy_pages = proxy_pages or {}
        self.apply_errors = apply_errors or {}
        self.port_forward_to = port_forward_to
        # (verb, group, resource) a SelfSubjectAccessReview answers no to; the metrics API versions served.
        self.denied = denied or set()
        self.served = served or {}
        self.objects: dict[tuple[str, str, str | None, str], dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []

    # ------------------------------------------------------------------ helpers for tests

    def calls_named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]

    def put(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Store an object as if someone (another run, a person) had created it."""
        metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations or {}}
        if namespace is not None:
            metadata["namespace"] = namespace
        stored = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
        self.objects[(api_version, kind, namespace, name)] = stored
        return stored

    def stored(self, kind: str) -> list[dict[str, Any]]:
        return [obj for (_, k, _, _), obj in self.objects.items() if k == kind]

    @staticmethod
    def _next(responses: list[Any]) -> Any:
        return copy.deepcopy(responses.pop(0) if len(responses) > 1 else responses[0])

    # ------------------------------------------------------------------ KubernetesApi

    def server_version(self) -> str:
        self.calls.append(("server_version",))
        return self.version

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, namespace, name))
        if (api_version, kind, name) in self.gets:
            found: dict[str, Any] | None = self._next(self.gets[(api_version, kind, name)])
            return found
        stored = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(stored) if stored is not None else None

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any] | None:
        self.calls.append(("list", kind, namespace, label_selector))
        if kind in self.not_served:
            return None
        if (api_version, kind) in self.recorded:
            recorded: dict[str, Any] = self._next(self.recorded[(api_version, kind)])
            recorded["items"] = [
                item for item in recorded["items"] if _matches(item["metadata"].get("labels") or {}, label_selector)
            ]
            return recorded
        items = [
            copy.deepcopy(obj)
            for (v, k, ns, _), obj in sorted(self.objects.items(), key=lambda entry: str(entry[0]))
            if v == api_version
            and k == kind
            and (namespace is None or ns == namespace)
            and _matches(obj["metadata"].get("labels") or {}, label_selector)
        ]
        return {"apiVersion": api_version, "kind": kind + "List", "metadata": {"resourceVersion": "1"}, "items": items}

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", manifest["kind"], manifest["metadata"]["name"]))
        key = (
            manifest["apiVersion"],
            manifest["kind"],
            manifest["metadata"].get("namespace"),
            manifest["metadata"]["name"],
        )
        if key in self.objects:
            raise KubernetesApiError(f"{manifest['kind']} {manifest['metadata']['name']} already exists", status=409)
        self.objects[key] = copy.deepcopy(manifest)
        return copy.deepcopy(manifest)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        if manifest["kind"] in self.not_served:
            raise KubernetesApiError(f"the cluster does not serve {manifest['kind']}", status=404)
        if manifest["kind"] in self.apply_errors:
            body = self.apply_errors[manifest["kind"]]
            raise KubernetesApiError(
                f"apply {manifest['kind']} {manifest['metadata']['name']}: {status_message(json.dumps(body), '?')}",
                status=int(body["code"]),
            )
        key = (
            manifest["apiVersion"],
            manifest["kind"],
            manifest["metadata"].get("namespace"),
            manifest["metadata"]["name"],
        )
        stored = copy.deepcopy(manifest)
        if manifest["kind"] == "HorizontalPodAutoscaler" and self._tolerance_gate_off():
            # What an API server with HPAConfigurableTolerance off does: drop the field, keep the rest.
            for rules in (stored["spec"].get("behavior") or {}).values():
                rules.pop("tolerance", None)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def _tolerance_gate_off(self) -> bool:
        minor = int(self.version.split(".")[1])
        return minor in (33, 34)

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, grace_period_s: int | None = None
    ) -> bool:
        self.calls.append(("delete", kind, namespace, name))
        return self.objects.pop((api_version, kind, namespace, name), None) is not None

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self.calls.append(("scale", namespace, deployment, replicas))
        stored = self.objects.get(("apps/v1", "Deployment", namespace, deployment))
        if stored is not None:
            stored["spec"]["replicas"] = replicas

    def pod_log(self, namespace: str, pod: str, container: str, *, tail_lines: int, previous: bool) -> str:
        self.calls.append(("pod_log", pod, container, tail_lines, previous))
        text = self.logs.get((pod, previous), "")
        return "\n".join(text.splitlines()[-tail_lines:])

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str, *, timeout_s: float = 5.0) -> str:
        self.calls.append(("pod_proxy_get", pod, port, path))
        if pod not in self.proxy_pages:
            raise KubernetesApiError(f'pods "{pod}" not found', status=404)
        return self.proxy_pages[pod]

    def follow_pod_log(self, namespace: str, pod: str, container: str) -> Iterator[str]:
        self.calls.append(("follow_pod_log", pod, container))
        yield from self.logs.get((pod, False), "").splitlines()

    def may(self, verb: str, group: str, resource: str, namespace: str | None, *, name: str = "") -> bool:
        self.calls.append(("may", verb, group, resource, namespace))
        return (verb, group, resource) not in self.denied

    def served_resources(self, group_version: str) -> tuple[str, ...] | None:
        self.calls.append(("served_resources", group_version))
        return self.served.get(group_version)

    def open_port_forward(self, namespace: str, pod: str, port: int) -> SocketLike:
        self.calls.append(("open_port_forward", pod, port))
        if self.port_forward_to is None:
            raise KubernetesApiError("port-forward not recorded", status=500)
        # A real TCP connection to a local server stands in for the API server's tunnel.
        return socket.create_connection(self.port_forward_to, timeout=5)
