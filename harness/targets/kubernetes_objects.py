"""Whose a Kubernetes object is, and until when: the marks the harness puts on every object it creates (its run, the
harness process, an expiry), and the reading of those marks on objects found in a shared cluster.

Pure functions over API-server JSON (dicts), like harness.targets.kubernetes_status: no client, no clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from harness.targets.base import OWNER_LABEL, RUN_LABEL

# When the run's objects may be deleted by anyone (`harness cleanup --kubeconfig`): RFC 3339, UTC.
EXPIRES_ANNOTATION = "harness.dev/expires-at"
# The model-service chart's name: a release holding it names its objects after itself alone.
_RELEASE_STEM = "model-service"


def default_release(run_id: str) -> str:
    """The run's own Helm release name: two runs in one namespace never name an object alike."""
    return f"{_RELEASE_STEM}-{hashlib.sha256(run_id.encode()).hexdigest()[:6]}"


def expiry_timestamp(now_s: float, lifetime_s: float) -> str:
    """`now_s + lifetime_s` as the annotation's RFC 3339 UTC time (whole seconds)."""
    moment = dt.datetime.fromtimestamp(now_s + lifetime_s, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def mark(manifest: dict[str, Any], run_label: str, owner: str, expires_at: str) -> dict[str, Any]:
    """The manifest labelled with its run and harness process, annotated with its expiry (changed in place)."""
    metadata = manifest.setdefault("metadata", {})
    metadata.setdefault("labels", {}).update({RUN_LABEL: run_label, OWNER_LABEL: owner})
    metadata.setdefault("annotations", {})[EXPIRES_ANNOTATION] = expires_at
    return manifest


def expiry_s(stored: dict[str, Any]) -> float | None:
    """When an object expires (seconds since the epoch), or None when it carries no readable expiry."""
    text = ((stored.get("metadata") or {}).get("annotations") or {}).get(EXPIRES_ANNOTATION)
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def expired(stored: dict[str, Any], now_s: float) -> bool:
    """Whether the object carries an expiry that has passed (an object without one never expires)."""
    moment = expiry_s(stored)
    return moment is not None and moment <= now_s


def run_of(stored: dict[str, Any]) -> str | None:
    """The run label of an object the harness created, else None."""
    return ((stored.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL)


def describe_owner(stored: dict[str, Any]) -> str:
    """Who an existing object belongs to, in words: the harness run and process that made it, else the field
    managers that wrote it (kubectl, helm, a controller), else that nobody is named."""
    metadata = stored.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get(RUN_LABEL):
        owner = f" (harness process {labels[OWNER_LABEL]})" if labels.get(OWNER_LABEL) else ""
        return f"harness run {labels[RUN_LABEL]}{owner}"
    managers = sorted({entry.get("manager") for entry in metadata.get("managedFields") or [] if entry.get("manager")})
    if managers:
        return "field manager(s) " + ", ".join(str(manager) for manager in managers)
    return "an owner that names itself nowhere (no harness label, no field manager)"
