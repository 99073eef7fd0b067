"""The files a load plan reads (request bodies, data sets, requests[].openai's prompts, the user's locustfile,
payload.file, the plan itself), delivered to the in-cluster generator pods as ConfigMaps, as Locust's own Helm
charts deliver locustfiles: no image rebuild for a new data set (trace files travel inside the plan, read).

A ConfigMap holds at most 1 MiB, so every file is cut into parts (`<name>.0000`, `<name>.0001`, ...) packed
into as many ConfigMaps as they need; charts/loadgen mounts them all in one projected volume and each pod joins
a file's parts, in order, into POD_FILES_DIR before Locust starts. A request whose bodies are made of files
(`files:`, body_binary, multipart or form files) reads them, with its data set, where they lie relative to one
another: the pods link each into INPUTS_LAYOUT_FILE's place for it under POD_INPUTS_DIR/<request's index>, laid
out as on the harness's machine (harness.load.bodies.input_layout), and the pod's plan reads them there
(`relocate`). Pure but for `read_plan_files`.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from harness.config import RequestConfig
from harness.errors import ConfigError
from harness.load.bodies import input_files, input_layout, needs_files, relocate
from harness.load.plan import LoadPlan

# Where each generator pod finds the joined files (an emptyDir of charts/loadgen), and the parts' mount.
POD_FILES_DIR = Path("/etc/harness")
# Where the workers write their records (an emptyDir of charts/loadgen; the records also go to the log).
POD_INTERVALS_DIR = Path("/results/intervals")
PLAN_FILE = "load_plan.json"
ENDPOINTS_FILE = "endpoints.json"
# A request's input files in the pods, and the lines "<name>\t<path under POD_FILES_DIR>" the pods link them by.
POD_INPUTS_DIR = POD_FILES_DIR / "inputs"
INPUTS_LAYOUT_FILE = "inputs_layout.tsv"
# Kubernetes refuses a ConfigMap whose keys and values exceed 1 MiB; a part leaves room for its key (names are
# cut to _NAME_MAX characters, a key is at most 253) and the rest of the object.
CONFIGMAP_MAX_BYTES = 1024 * 1024
_CONFIGMAP_BUDGET_BYTES = CONFIGMAP_MAX_BYTES - 8 * 1024
PART_BYTES = _CONFIGMAP_BUDGET_BYTES - 256
_NAME_MAX = 200
# What one run may put into the cluster's etcd as ConfigMaps (64 of them): a data set or files beyond that belong
# in the image or on a volume, not in the API server's store.
MAX_FILES_BYTES = 64 * CONFIGMAP_MAX_BYTES
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _size(count: int) -> str:
    if count >= 2**20:
        return f"{count / 2**20:.1f} MiB"
    return f"{count / 2**10:.1f} KiB" if count >= 2**10 else f"{count} bytes"


def _pod_name(index: int, path: Path) -> str:
    # Numbered, so two files of the same name in different folders stay apart; a ConfigMap key allows only these.
    return f"{index}-{_UNSAFE.sub('_', path.name)}"[:_NAME_MAX]


def _readers(plan: LoadPlan) -> list[tuple[str, list[Path]]]:
    """Each part of the plan that reads local files, as a scenario names it, with the files it reads."""
    readers: list[tuple[str, list[Path]]] = []
    if plan.payload.source == "jsonl" and plan.payload.file is not None:
        readers.append(("payload.file", [Path(plan.payload.file)]))
    for index, request in enumerate(plan.requests or ()):
        where = f"requests[{index}] '{request.name}'"
        if needs_files(request):
            readers.append((where, input_files(request)))
        else:
            prompts = request.openai.prompts if request.openai is not None else None
            readers.append(
                (where, [path for path in (request.body_file, request.dataset, prompts) if path is not None])
            )
    if plan.user_locustfile is not None:
        readers.append(("load.locustfile", [Path(plan.user_locustfile)]))
    return readers


def local_files(plan: LoadPlan) -> dict[Path, str]:
    """Every local file the plan reads, mapped to its name in the pods (one name per distinct file)."""
    names: dict[Path, str] = {}
    for _, paths in _readers(plan):
        for path in paths:
            names.setdefault(path, _pod_name(len(names), path))
    return names


def request_inputs_dir(index: int) -> Path:
    """Where the pods lay out the input files of the plan's `index`th request."""
    return POD_INPUTS_DIR / str(index)


def inputs_layout(plan: LoadPlan, names: Mapping[Path, str]) -> bytes:
    """INPUTS_LAYOUT_FILE: for every input file of every request made of files, its name among the pods' files
    and the path, under POD_FILES_DIR, the pods link it to (a file two requests read is linked twice); empty
    without such requests."""
    lines = []
    for index, request in enumerate(plan.requests or ()):
        if not needs_files(request):
            continue
        _, relative_paths = input_layout(request)
        for path, relative in relative_paths.items():
            if any(character in str(relative) for character in "\t\n\r"):
                raise ConfigError(
                    f"requests[{index}] '{request.name}': '{path}' has a tab or line break in its name, which the "
                    "in-cluster load generator cannot lay out",
                    hint="rename the file, or use target.kubernetes.loadgen: host",
                )
            in_pod = (request_inputs_dir(index) / PurePosixPath(relative)).relative_to(POD_FILES_DIR)
            lines.append(f"{names[path]}\t{in_pod.as_posix()}\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


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
            relocate(request, input_layout(request)[0], request_inputs_dir(index))
            if needs_files(request)
            else _request_in_pod(request, in_pod)
            for index, request in enumerate(plan.requests)
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


def _request_in_pod(request: RequestConfig, in_pod: Callable[[Path | None], Path | None]) -> RequestConfig:
    update: dict[str, Any] = {"body_file": in_pod(request.body_file), "dataset": in_pod(request.dataset)}
    if request.openai is not None and request.openai.prompts is not None:
        update["openai"] = request.openai.model_copy(update={"prompts": in_pod(request.openai.prompts)})
    return request.model_copy(update=update)


def read_plan_files(plan: LoadPlan) -> dict[str, bytes]:
    """The contents of the plan's local files by pod name, with INPUTS_LAYOUT_FILE when a request is made of files.
    A file that cannot be read is a ConfigError, and so are files over MAX_FILES_BYTES in all (found by their
    sizes, before any is read), naming the part of the scenario that reads the most."""
    names = local_files(plan)
    sizes: dict[Path, int] = {}
    for path in names:
        try:
            sizes[path] = path.stat().st_size
        except OSError as error:
            raise ConfigError(
                f"'{path}': cannot read it to send to the load generator pods ({error.strerror})"
            ) from None
    total_bytes = sum(sizes.values())
    if total_bytes > MAX_FILES_BYTES:
        where, paths = max(_readers(plan), key=lambda reader: sum(sizes[path] for path in reader[1]))
        raise ConfigError(
            f"{where}: its {len(paths)} file(s) come to {_size(sum(sizes[path] for path in paths))} "
            f"({_size(total_bytes)} with the rest of the run's), and the harness sends at most "
            f"{_size(MAX_FILES_BYTES)} of files to the in-cluster load generator (as ConfigMaps of 1 MiB)",
            hint="use fewer or smaller files, or target.kubernetes.loadgen: host",
        )
    contents = {}
    for path, name in names.items():
        try:
            contents[name] = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"'{path}': cannot read it to send to the load generator pods ({error.strerror})"
            ) from None
    layout = inputs_layout(plan, names)
    if layout:
        contents[INPUTS_LAYOUT_FILE] = layout
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
