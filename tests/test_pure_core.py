"""The pure decision core (analysis, autoscaling, verdict) must not import any I/O library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "subprocess",
    "socket",
    "os",
    "pathlib",
    "requests",
    "urllib",
    "http",
    "docker",
    "kubernetes",
    "locust",
    "gevent",
    "bentoml",
    "prometheus_client",
    "psutil",
}
# Imported by Python or numpy themselves (os, pathlib, socket ...), so only these can be checked at runtime.
FORBIDDEN_LOADED = {"requests", "docker", "kubernetes", "locust", "gevent", "bentoml", "prometheus_client", "psutil"}


def pure_modules() -> list[Path]:
    candidates = [
        *sorted((ROOT / "harness" / "analysis").glob("*.py")),
        *(ROOT / "harness" / name for name in ("verdict.py", "objectives.py", "quantity.py")),
        ROOT / "harness" / "targets" / "kubernetes_status.py",
        ROOT / "harness" / "targets" / "kubernetes_objects.py",
        ROOT / "harness" / "targets" / "kubernetes_access.py",
        ROOT / "harness" / "targets" / "readiness.py",
        ROOT / "harness" / "load" / "json_fields.py",
        ROOT / "harness" / "load" / "recording.py",
        ROOT / "harness" / "load" / "shape.py",
        ROOT / "harness" / "load" / "reference_answers.py",
        ROOT / "harness" / "load" / "streaming.py",
    ]
    autoscaling = ROOT / "harness" / "autoscaling.py"
    if autoscaling.exists():
        candidates.append(autoscaling)
    return candidates


def imported_top_level_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_checker_sees_every_import_form() -> None:
    source = "import os.path\nfrom socket import socket\nimport numpy as np, http.client\nfrom . import latency\n"
    assert imported_top_level_names(source) == {"os", "socket", "numpy", "http"}


def test_pure_modules_exist() -> None:
    names = {path.name for path in pure_modules()}
    assert {"latency.py", "timeline.py", "stages.py", "autoscaling_figures.py", "verdict.py"} <= names


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_no_io_library(path: Path) -> None:
    bad = imported_top_level_names(path.read_text(encoding="utf-8")) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports I/O libraries: {sorted(bad)}"


@pytest.mark.integration
def test_importing_the_core_loads_no_io_library() -> None:
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for path in pure_modules()
    ]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    loaded = set(json.loads(output))
    assert not loaded & FORBIDDEN_LOADED, f"the pure core pulls in {sorted(loaded & FORBIDDEN_LOADED)}"
