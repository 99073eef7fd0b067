"""Secrets kept out of everything the harness writes or prints: run directories, reports, the screen.

The values of `service.env` are the way a service gets its credentials, so every one of them is treated as a
secret: files keep the names, never the values. Request headers keep `${NAME}` references to the environment
and lose literal values. URLs lose their user:password part.
"""

from __future__ import annotations

import copy
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"
# A header value that only names environment variables, around fixed words: `Bearer ${API_TOKEN}`.
_ENV_REFERENCE_ONLY = re.compile(r"(?:[A-Za-z-]+ )?(?:\$\{[A-Za-z_][A-Za-z0-9_]*\})+")


def redact_url(url: str) -> str:
    """`url` without the password of its user-info part (`https://user:***@host/...`)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:{REDACTED}" if parts.password is not None else REDACTED
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def url_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """Split `https://user:password@host/...` into the URL without them and (user, password)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))


def redact_scenario_data(data: dict[str, Any]) -> dict[str, Any]:
    """A scenario's plain data (as dumped) with `service.env` values and URL credentials redacted."""
    redacted = copy.deepcopy(data)
    service = redacted.get("service")
    if isinstance(service, dict) and isinstance(service.get("env"), dict):
        service["env"] = {name: REDACTED for name in service["env"]}
    for request in redacted.get("requests") or []:
        # `${NAME}` references are kept (the value is read in the load process only); literal values are not.
        if isinstance(request, dict) and isinstance(request.get("headers"), dict):
            request["headers"] = {
                name: value if _ENV_REFERENCE_ONLY.fullmatch(str(value)) else REDACTED
                for name, value in request["headers"].items()
            }
    metrics = redacted.get("metrics")
    for key in ("pushgateway_url", "remote_write_url"):
        if isinstance(metrics, dict) and isinstance(metrics.get(key), str):
            metrics[key] = redact_url(metrics[key])
    return redacted


def redact_manifests(manifests: Iterable[dict[str, Any]], env_names: Iterable[str]) -> list[dict[str, Any]]:
    """Kubernetes manifests with the values of the named container environment variables redacted."""
    names = set(env_names)
    redacted = copy.deepcopy(list(manifests))
    for manifest in redacted:
        pod = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            for variable in container.get("env") or []:
                if variable.get("name") in names and "value" in variable:
                    variable["value"] = REDACTED
    return redacted


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of a secret value replaced (values shorter than 4 characters are left:
    replacing "1" everywhere would hide more than it protects)."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
