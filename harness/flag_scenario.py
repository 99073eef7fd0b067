"""A scenario from command-line flags, as k6 and Locust start: a URL, users or a rate, a duration, objectives.

`harness run --url http://127.0.0.1:3000/classify --users 8 --duration 60s --objective 'latency_p95_ms<=250'`
runs without a scenario file: the flags become the plain data of a scenario on the external target (one stage,
the URL's path as the endpoint), validated like a file. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from harness.errors import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_OBJECTIVE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


def parse_duration_s(text: str, option: str = "--duration") -> float:
    """Seconds of a duration as k6 writes them: `60s`, `2m`, `1m30s`, `1h`, `500ms`, or a bare number of seconds."""
    spoken = text.strip()
    try:
        seconds = float(spoken)
    except ValueError:
        parts = _DURATION_PART.findall(spoken)
        if not parts or "".join(number + unit for number, unit in parts) != spoken:
            raise ConfigError(f"{option} '{text}': expected a duration such as 60s, 2m, 1m30s or 90") from None
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    if not seconds > 0:
        raise ConfigError(f"{option} '{text}': must be longer than 0 s")
    return seconds


def parse_objective(text: str) -> dict[str, Any]:
    """`latency_p95_ms<=250` as a scenario objective ({"metric": ..., "max": 250}); `>=` gives a minimum."""
    match = _OBJECTIVE.match(text)
    if match is None:
        raise ConfigError(
            f"--objective '{text}': expected METRIC<=NUMBER or METRIC>=NUMBER, e.g. 'latency_p95_ms<=250' or "
            "'throughput_rps>=20'"
        )
    metric, operator, raw = match.groups()
    try:
        bound = float(raw)
    except ValueError:
        raise ConfigError(f"--objective '{text}': '{raw}' is not a number") from None
    return {"metric": metric, "max" if operator == "<=" else "min": bound}


def split_url(url: str) -> tuple[str, str]:
    """(base URL, path) of a service URL: `http://127.0.0.1:3000/classify` -> (`http://127.0.0.1:3000`, `/classify`)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url '{url}': expected an http(s) URL, e.g. http://127.0.0.1:3000/classify")
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


def _name(base_url: str) -> str:
    """A scenario name (it names the run directory) from the URL's host and port."""
    netloc = urllib.parse.urlsplit(base_url).netloc.rsplit("@", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", netloc).strip("-.") or "url"


def scenario_from_flags(
    urls: Sequence[str],
    *,
    users: int | None,
    rate_rps: float | None,
    duration_s: float,
    warmup_s: float | None = None,
    objectives: Sequence[str] = (),
    body: str | None = None,
) -> dict[str, Any]:
    """The plain data of a one-stage scenario on the external target at `urls` (validated later, like a file).

    Users (closed model) or a rate (open model), not both; neither means one user. Without `body` the requests
    are the default payload POSTed to the URL's path (what the digits example takes); with it, that JSON."""
    if not urls:
        raise ConfigError(
            "a run without a scenario file needs --url (the service's URL, e.g. http://127.0.0.1:3000/classify)"
        )
    if users is not None and rate_rps is not None:
        raise ConfigError("--users (closed model) and --rate (open model) exclude each other; give one")
    bases, paths = zip(*(split_url(url) for url in urls), strict=True)
    if len(set(paths)) > 1:
        raise ConfigError(f"--url: every URL must have the same path, got {', '.join(sorted(set(paths)))}")
    path = paths[0]
    load: dict[str, Any] = {"arrival_rate_rps": rate_rps} if rate_rps is not None else {"users": users or 1}
    stages: list[dict[str, Any]] = []
    if warmup_s is not None:
        stages.append({"name": "warmup", "duration_s": warmup_s, **load, "judged": False})
    stages.append({"name": "load", "duration_s": duration_s, **load})
    scenario: dict[str, Any] = {
        "name": _name(bases[0]),
        "description": f"harness run --url {' --url '.join(urls)}",
        "target": {"kind": "external", "urls": list(bases)},
        "service": {"endpoint": path},
        "stages": stages,
        "objectives": [parse_objective(text) for text in objectives],
    }
    if body is not None:
        try:
            document = json.loads(body)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--body: not valid JSON ({error.msg} at character {error.pos})") from None
        scenario["requests"] = [{"name": path, "path": path, "body_template": document}]
    return scenario
