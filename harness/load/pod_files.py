"""The files a load plan reads (request bodies, data sets, the user's locustfile, payload.file, the plan itself),
delivered to the in-cluster generator pods as ConfigMaps, as Locust's own Helm charts deliver locustfiles: no
image rebuild for a new data set.

A ConfigMap holds at most 1 MiB, so every file is cut into parts (`<name>.0000`, `<name>.0001`, ...) packed
into as many ConfigMaps as they need; charts/loadgen mounts them all in one projected volume and each pod joins
a file's parts, in order, into POD_FILES_DIR before Locust starts. Pure but for `read_plan_files`.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from harness.errors import ConfigError
from harness.load.plan import LoadPlan

# Where each generator pod finds the joined files (an emptyDir of charts/loadgen), and the parts' mount.
POD_FILES_DIR = Path("/etc/harness")
# Where the workers write their records (an emptyDir of charts/loadgen; the records also go to the log).
POD_INTERVALS_DIR = Path("/results/intervals")
PLAN_FILE = "load_plan.json"
ENDPOINTS_FILE = "endpoints.json"
# Kubernetes refuses a ConfigMap whose keys and values exceed 1 MiB; a part leaves room for its key (names are
# cut to _NAME_MAX characters, a key is at most 253) and the rest of the object.
CONFIGMAP_MAX_BYTES = 1024 * 1024
_CONFIGMAP_BUDGET_BYTES = CONFIGMAP_MAX_BYTES - 8 * 1024
PART_BYTES = _CONFIGMAP_BUDGET_BYTES - 256
_NAME_MAX = 200
# What one run may put into the cluster's etcd as ConfigMaps (64 of them): a data set beyond that belongs in
# the image or on a volume, not in the API server's store.
MAX_FILES_BYTES = 64 * CONFIGMAP_MAX_BYTES
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _pod_name(index: int, path: Path) -> str:
    # Numbered, so two files of the same name in different folders stay apart; a ConfigMap key allows only these.
    return f"{index}-{_UNSAFE.sub('_', path.name)}"[:_NAME_MAX]


def local_files(plan: LoadPlan) -> dict[Path, str]:
    """Every local file the plan reads, mapped to its name in the pods (one name per distinct file)."""
    paths: list[Path] = []
    if plan.payload.source == "jsonl" and plan.payload.file is not None:
        paths.append(Path(plan.payload.file))
    for request in plan.requests or ():
        paths += [path for path in (request.body_file, request.dataset) if path is not None]
    if plan.user_locustfile is not None:
        paths.append(Path(plan.user_locustfile))
    names: dict[Path, str] = {}
    for path in paths:
        names.setdefault(path, _pod_name(len(names), path))
    return names


def pod_plan(plan: LoadPlan, workers: int) -> LoadPlan:
    """The plan as the generator pods run it: `workers` processes, every file at its pod path."""
    names = local_files(plan)

    def in_pod(path: Path | str | None) -> Path | None:
        return None if path is None else POD_FILES_DIR / names[Path(path)]

    payload = plan.payload
    if payload.source == "jsonl" and payload.file is not None:
        payload = dataclasses.replace(payload, file=str(in_pod(payload.file)))
    requests = None
    if plan.requests is not None:
        requests = tuple(
            request.model_copy(update={"body_file": in_pod(request.body_file), "dataset": in_pod(request.dataset)})
            for request in plan.requests
        )
    locustfile = in_pod(plan.user_locustfile)
    return dataclasses.replace(
        plan,
        processes=workers,
        endpoints_file=str(POD_FILES_DIR / ENDPOINTS_FILE),
        intervals_dir=str(POD_INTERVALS_DIR),
        payload=payload,
        requests=requests,
        user_locustfile=None if locustfile is None else str(locustfile),
    )


def read_plan_files(plan: LoadPlan) -> dict[str, bytes]:
    """The contents of the plan's local files by pod name; a file that cannot be read is a ConfigError."""
    contents = {}
    for path, name in local_files(plan).items():
        try:
            contents[name] = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"'{path}': cannot read it to send to the load generator pods ({error.strerror})"
            ) from None
    return contents


def _cut(content: bytes, text: bool) -> list[bytes]:
    """`content` in parts of at most PART_BYTES; text is cut between characters, so each part is text too."""
    parts: list[bytes] = []
    start = 0
    while start < len(content) or not parts:
        end = min(start + PART_BYTES, len(content))
        while text and start < end < len(content) and content[end] & 0xC0 == 0x80:
            end -= 1  # a UTF-8 continuation byte: cut before its character
        parts.append(content[start:end])
        start = end
    return parts


def configmap_parts(files: Mapping[str, bytes]) -> list[dict[str, dict[str, str]]]:
    """The files cut into parts of at most PART_BYTES, packed in order into ConfigMaps under CONFIGMAP_MAX_BYTES:
    UTF-8 files as `data` (readable with kubectl), others as `binaryData` (base64). More than MAX_FILES_BYTES in
    all is a ConfigError naming the limit."""
    total_bytes = sum(len(content) for content in files.values())
    if total_bytes > MAX_FILES_BYTES:
        sizes = ", ".join(f"{name} {len(content) / 2**20:.1f} MiB" for name, content in files.items())
        raise ConfigError(
            f"the in-cluster load generator's files come to {total_bytes / 2**20:.1f} MiB ({sizes}); the harness "
            f"sends at most {MAX_FILES_BYTES // 2**20} MiB to a cluster, as ConfigMaps of 1 MiB",
            hint="use fewer data set rows or bodies, or target.kubernetes.loadgen: host",
        )
    configmaps: list[dict[str, dict[str, str]]] = []
    used_bytes = _CONFIGMAP_BUDGET_BYTES
    for name, content in files.items():
        try:
            content.decode("utf-8")
            text = True
        except UnicodeDecodeError:
            text = False
        for number, part in enumerate(_cut(content, text)):
            key = f"{name}.{number:04d}"
            if used_bytes + len(key) + len(part) > _CONFIGMAP_BUDGET_BYTES:
                configmaps.append({"data": {}, "binaryData": {}})
                used_bytes = 0
            if text:
                configmaps[-1]["data"][key] = part.decode("utf-8")
            else:
                configmaps[-1]["binaryData"][key] = base64.b64encode(part).decode()
            used_bytes += len(key) + len(part)
    return configmaps
