"""Per-replica BentoML metrics from a Prometheus server: the PromQL the harness sends and the parsing of answers.

The HTTP call is injected (`fetch(url) -> body`), so queries and parsing are tested without a server. The
queries assume the label conventions of a Prometheus Operator ServiceMonitor (`namespace`, `pod`) with
`honorLabels: true`, which keeps BentoML's own `endpoint` label (the API route); the label names can be
changed for other scrape configurations.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

from harness.errors import MetricsError
from harness.metrics.scrape import (
    BATCH_SIZE_COUNT,
    BATCH_SIZE_SUM,
    DURATION_COUNT,
    DURATION_SUM,
    ENGINE_KV_CACHE_USAGE,
    ENGINE_RUNNING,
    ENGINE_WAITING,
    IN_PROGRESS,
    REQUESTS_TOTAL,
)
from harness.model import ServerSample

Fetch = Callable[[str], bytes]

# ServerSample field -> (series, the label naming the API route: `endpoint` is "/classify", `method_name` "classify";
# None for an LLM engine's series, which no route labels).
_SERIES: Final[dict[str, tuple[str, str | None]]] = {
    "requests_total": (REQUESTS_TOTAL, "endpoint"),
    "in_progress": (IN_PROGRESS, "endpoint"),
    "duration_sum_s": (DURATION_SUM, "endpoint"),
    "duration_count": (DURATION_COUNT, "endpoint"),
    "batch_size_sum": (BATCH_SIZE_SUM, "method_name"),
    "batch_size_count": (BATCH_SIZE_COUNT, "method_name"),
    "engine_running": (ENGINE_RUNNING, None),
    "engine_waiting": (ENGINE_WAITING, None),
    "engine_kv_cache_usage": (ENGINE_KV_CACHE_USAGE, None),
}
# Combined over a pod's label sets: counts add up, the KV cache's use is its fullest one.
_AGGREGATION: Final = {"engine_kv_cache_usage": "max"}
# BentoML's built-in routes (health, metrics, docs), left out when no endpoint is named.
_INFRASTRUCTURE_ROUTES: Final = (
    r"(.*/)?(readyz|livez|healthz|metrics|docs\.json|schema\.json)|/?|/static_content/.*|/assets/.*"
)
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _string(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternation(values: Collection[str]) -> str:
    """An RE2 regex matching exactly these values (Prometheus anchors label regexes)."""
    return "|".join(_RE2_SPECIAL.sub(r"\\\1", value) for value in sorted(values))


def replica_queries(
    namespace: str,
    pods: Sequence[str],
    *,
    endpoints: Collection[str] | None = None,
    namespace_label: str = "namespace",
    pod_label: str = "pod",
) -> dict[str, str]:
    """One instant query per ServerSample field, each summed by pod over the wanted API routes."""
    if not pods:
        raise MetricsError("PromQL for replica metrics needs at least one pod name")
    queries = {}
    for field, (series, route_label) in _SERIES.items():
        matchers = [
            f"{namespace_label}={_string(namespace)}",
            f"{pod_label}=~{_string(_alternation(pods))}",
        ]
        if route_label is None:
            pass
        elif endpoints is None:
            if route_label == "endpoint":
                matchers.append(f"endpoint!~{_string(_INFRASTRUCTURE_ROUTES)}")
        else:
            routes = endpoints if route_label == "endpoint" else {e.strip("/") for e in endpoints}
            matchers.append(f"{route_label}=~{_string(_alternation(routes))}")
        aggregation = _AGGREGATION.get(field, "sum")
        queries[field] = f"{aggregation} by ({pod_label}) ({series}{{{', '.join(matchers)}}})"
    return queries


def query_url(base_url: str, promql: str, time_s: float | None = None) -> str:
    """The instant-query URL (GET /api/v1/query) for one expression."""
    params = {"query": promql}
    if time_s is not None:
        params["time"] = f"{time_s:.3f}"
    return base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode(params)


def parse_vector(body: bytes | str, label: str) -> dict[str, tuple[float, float]]:
    """An instant-vector answer as {label value: (timestamp_s, value)}; MetricsError on an error answer."""
    try:
        answer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MetricsError(f"Prometheus answer is not JSON ({error})") from error
    if not isinstance(answer, dict) or answer.get("status") != "success":
        detail = answer.get("error", answer) if isinstance(answer, dict) else answer
        kind = answer.get("errorType", "error") if isinstance(answer, dict) else "error"
        raise MetricsError(f"Prometheus query failed ({kind}): {detail}")
    data: dict[str, Any] = answer.get("data") or {}
    if data.get("resultType") != "vector":
        raise MetricsError(f"Prometheus answered a {data.get('resultType')}, expected an instant vector")
    values: dict[str, tuple[float, float]] = {}
    for item in data.get("result") or []:
        key = (item.get("metric") or {}).get(label)
        timestamp, value = item["value"]
        if key is not None:
            values[key] = (float(timestamp), float(value))
    return values


def urllib_fetch(timeout_s: float) -> Fetch:
    """A fetch function over urllib (no proxy), raising MetricsError on any failure."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch(url: str) -> bytes:
        try:
            with opener.open(url, timeout=timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            # Prometheus answers 400/422/503 with a JSON error body worth showing.
            return bytes(error.read())
        except (urllib.error.URLError, OSError) as error:
            raise MetricsError(f"GET {url.split('?')[0]}: {error}") from error

    return fetch


class PrometheusReplicaMetrics:
    """ServerSamples for pods from a Prometheus that scrapes them (e.g. through the chart's ServiceMonitor)."""

    def __init__(
        self,
        base_url: str,
        fetch: Fetch,
        namespace: str,
        *,
        namespace_label: str = "namespace",
        pod_label: str = "pod",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url
        self.fetch = fetch
        self.namespace = namespace
        self.namespace_label = namespace_label
        self.pod_label = pod_label
        self.clock = clock

    def samples(self, pods: Sequence[str], *, endpoints: Collection[str] | None = None) -> list[ServerSample]:
        """One sample per pod at one evaluation time; a pod with no series at all is `ok=False`, never zeros."""
        if not pods:
            return []
        now_s = self.clock()
        queries = replica_queries(
            self.namespace, pods, endpoints=endpoints, namespace_label=self.namespace_label, pod_label=self.pod_label
        )
        by_field: dict[str, dict[str, tuple[float, float]]] = {}
        for field_name, promql in queries.items():
            try:
                by_field[field_name] = parse_vector(self.fetch(query_url(self.base_url, promql, now_s)), self.pod_label)
            except MetricsError as error:
                return [ServerSample(t_s=now_s, replica=pod, ok=False, error=str(error)) for pod in pods]
        samples = []
        for pod in pods:
            found = {name: values[pod] for name, values in by_field.items() if pod in values}
            if not found:
                samples.append(
                    ServerSample(t_s=now_s, replica=pod, ok=False, error=f"no series for pod {pod} in Prometheus")
                )
                continue
            values = {name: value for name, (_, value) in found.items()}
            samples.append(
                ServerSample(
                    t_s=max(timestamp for timestamp, _ in found.values()),
                    replica=pod,
                    ok=True,
                    requests_total=values.get("requests_total"),
                    in_progress=values.get("in_progress"),
                    duration_sum_s=values.get("duration_sum_s"),
                    duration_count=values.get("duration_count"),
                    batch_size_sum=values.get("batch_size_sum"),
                    batch_size_count=values.get("batch_size_count"),
                    engine_running=values.get("engine_running"),
                    engine_waiting=values.get("engine_waiting"),
                    engine_kv_cache_usage=values.get("engine_kv_cache_usage"),
                )
            )
        return samples
