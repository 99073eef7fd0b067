"""What every target running BentoML replicas shares: the replicas' BENTOML_CONFIG_OPTIONS, the port they serve
on in a container, and the HTTP probe of their readiness path."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from typing import Any

from harness.config import Scenario

# The port BentoML serves on inside a container (its default, EXPOSEd by the image; the model-service chart's
# containerPort).
CONTAINER_PORT = 3000


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested BentoML configuration -> dotted keys, as BENTOML_CONFIG_OPTIONS expects."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def bentoml_config_options(scenario: Scenario) -> str:
    """BENTOML_CONFIG_OPTIONS for a replica: the scenario's overrides; access logging off unless asked."""
    service_class = scenario.service.import_string.split(":")[-1]
    options = {f"services.{service_class}.logging.access.enabled": False}
    options.update(flatten_config(scenario.service.bentoml_config))
    return " ".join(
        f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in options.items()
    )


def http_ok(url: str, timeout_s: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    """True when GET url answers 2xx."""
    return http_probe(url, timeout_s, context) is None


def http_probe(url: str, timeout_s: float = 1.0, context: ssl.SSLContext | None = None) -> BaseException | None:
    """None when GET url answers 2xx, else why not: the error (urllib's URLError wraps a TLS failure), or an
    HTTPError for another status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return error
    return None if 200 <= status < 300 else ValueError(f"status {status}")
