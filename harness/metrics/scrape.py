"""Read one BentoML replica's Prometheus /metrics into a `ServerSample`: the HTTP GET and the text parsing.

Figures are summed over every label set (endpoint, status code, worker) of the service's own API
endpoints; BentoML's infrastructure routes (/readyz, /livez, /healthz, /metrics, docs) are left out
so health checks do not count as traffic. A series the replica does not expose is None, never 0.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from typing import Final

from harness.errors import MetricsError
from harness.model import ServerSample

# Sample names as BentoML 1.4 exposes them (labels: endpoint="/classify", http_response_code="200").
REQUESTS_TOTAL: Final = "bentoml_service_request_total"
IN_PROGRESS: Final = "bentoml_service_request_in_progress"
DURATION_SUM: Final = "bentoml_service_request_duration_seconds_sum"
DURATION_COUNT: Final = "bentoml_service_request_duration_seconds_count"
# Labelled by method_name and worker_index, not endpoint; only batchable API methods have it.
BATCH_SIZE_SUM: Final = "bentoml_service_adaptive_batch_size_sum"
BATCH_SIZE_COUNT: Final = "bentoml_service_adaptive_batch_size_count"

# An LLM engine's state, by vLLM's names (which other servers copy): sequences being generated, requests queued, and
# the share of the KV cache in use (0-1; vLLM before 0.9 called it gpu_cache_usage_perc). Any label set counts.
ENGINE_RUNNING: Final = "vllm:num_requests_running"
ENGINE_WAITING: Final = "vllm:num_requests_waiting"
ENGINE_KV_CACHE_USAGE: Final = "vllm:kv_cache_usage_perc"
_ENGINE_KV_CACHE_USAGE_BEFORE_0_9: Final = "vllm:gpu_cache_usage_perc"

_ENDPOINT_SAMPLES: Final = frozenset({REQUESTS_TOTAL, IN_PROGRESS, DURATION_SUM, DURATION_COUNT})
_BATCH_SAMPLES: Final = frozenset({BATCH_SIZE_SUM, BATCH_SIZE_COUNT})
_ENGINE_SUMMED: Final = frozenset({ENGINE_RUNNING, ENGINE_WAITING})
_ENGINE_MAX: Final = {
    ENGINE_KV_CACHE_USAGE: ENGINE_KV_CACHE_USAGE,
    _ENGINE_KV_CACHE_USAGE_BEFORE_0_9: ENGINE_KV_CACHE_USAGE,
}

# Routes BentoML adds to every service (possibly under a path prefix), in their last path segment.
_INFRASTRUCTURE_SEGMENTS: Final = frozenset({"readyz", "livez", "healthz", "metrics", "docs.json", "schema.json", ""})
_INFRASTRUCTURE_PREFIXES: Final = ("/static_content", "/assets")

# urllib would otherwise honour http_proxy for loopback addresses too.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def is_api_endpoint(endpoint: str) -> bool:
    """Whether an `endpoint` label names one of the service's API routes rather than a BentoML built-in route."""
    if endpoint.startswith(_INFRASTRUCTURE_PREFIXES):
        return False
    return endpoint.rstrip("/").rsplit("/", 1)[-1] not in _INFRASTRUCTURE_SEGMENTS


def parse_bentoml_metrics(
    text: str, t_s: float, replica: str, *, endpoints: Collection[str] | None = None
) -> ServerSample:
    """Sum the request, in-progress, duration and batch-size series of one /metrics page.

    `endpoints` restricts the sums to those routes (e.g. {"/classify"}); by default every API route
    counts. Raises MetricsError when the text is not the Prometheus exposition format.
    """
    # prometheus_client is imported at the first scrape, not when a run starts (about 0.1 s).
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(endpoints) if endpoints is not None else None
    methods = {endpoint.strip("/") for endpoint in wanted} if wanted is not None else None
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in _ENDPOINT_SAMPLES:
                    endpoint = sample.labels.get("endpoint", "")
                    if not (endpoint in wanted if wanted is not None else is_api_endpoint(endpoint)):
                        continue
                elif sample.name in _BATCH_SAMPLES:
                    if methods is not None and sample.labels.get("method_name", "") not in methods:
                        continue
                elif sample.name in _ENGINE_MAX:
                    name = _ENGINE_MAX[sample.name]
                    totals[name] = max(totals.get(name, 0.0), sample.value)
                    continue
                elif sample.name not in _ENGINE_SUMMED:
                    continue
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    except ValueError as error:
        raise MetricsError(f"replica {replica}: /metrics is not in the Prometheus text format ({error})") from error
    return ServerSample(
        t_s=t_s,
        replica=replica,
        ok=True,
        requests_total=totals.get(REQUESTS_TOTAL),
        in_progress=totals.get(IN_PROGRESS),
        duration_sum_s=totals.get(DURATION_SUM),
        duration_count=totals.get(DURATION_COUNT),
        batch_size_sum=totals.get(BATCH_SIZE_SUM),
        batch_size_count=totals.get(BATCH_SIZE_COUNT),
        engine_running=totals.get(ENGINE_RUNNING),
        engine_waiting=totals.get(ENGINE_WAITING),
        engine_kv_cache_usage=totals.get(ENGINE_KV_CACHE_USAGE),
    )


def scrape_replica(
    url: str,
    replica: str,
    timeout_s: float,
    now: Callable[[], float] = time.time,
    *,
    endpoints: Collection[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ServerSample:
    """GET a replica's metrics URL and parse it (https checked by `ssl_context`); any failure (refused, timeout,
    HTTP error, garbage) is returned as `ok=False` with the error text, never raised, because replicas vanish
    during a run."""
    if not url.startswith(("http://", "https://")):
        return ServerSample(t_s=now(), replica=replica, ok=False, error=f"{url}: not an http(s) URL")
    opener = _OPENER
    if ssl_context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl_context)
        )
    try:
        with opener.open(url, timeout=timeout_s) as response:
            body = response.read().decode("utf-8")
        return parse_bentoml_metrics(body, now(), replica, endpoints=endpoints)
    except urllib.error.HTTPError as error:
        message = f"GET {url}: HTTP {error.code} {error.reason}"
    except urllib.error.URLError as error:
        message = f"GET {url}: {error.reason}"
    except (OSError, http.client.HTTPException, ValueError) as error:
        # OSError covers timeouts and resets mid-body; ValueError covers undecodable bytes.
        message = f"GET {url}: {type(error).__name__}: {error}"
    except MetricsError as error:
        message = f"GET {url}: {error.message}"
    return ServerSample(t_s=now(), replica=replica, ok=False, error=message)
