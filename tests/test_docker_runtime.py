"""scripts/docker/runc-bounded: the runtime dockerd runs where the capability bounding set is reduced, so that
privileged containers (kind's nodes) start; scripts/docker-setup.sh installs it there."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "scripts" / "docker" / "runc-bounded"
ALL = [
    "CAP_CHOWN",
    "CAP_SYS_ADMIN",
    "CAP_SYS_RESOURCE",
    "CAP_NET_ADMIN",
]


def holdable() -> set[str]:
    status = Path("/proc/self/status").read_text().splitlines()
    bits = int(next(line.split()[1] for line in status if line.startswith("CapBnd:")), 16)
    numbers = {"CAP_CHOWN": 0, "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24}
    return {name for name, number in numbers.items() if bits >> number & 1}


def run_runtime(*arguments: str) -> None:
    # /bin/true stands in for runc: what is checked is the file the real runc would read.
    env = dict(os.environ, HARNESS_RUNC="/bin/true")
    subprocess.run([str(RUNTIME), *arguments], env=env, check=True, timeout=30)


@pytest.mark.integration
def test_create_keeps_only_capabilities_this_machine_can_hold(tmp_path: Path) -> None:
    capabilities = {name: list(ALL) for name in ("bounding", "effective", "permitted")}
    (tmp_path / "config.json").write_text(json.dumps({"process": {"capabilities": capabilities}, "root": {}}))
    run_runtime("--root", "/run/x", "create", "--bundle", str(tmp_path), "container-1")
    written = json.loads((tmp_path / "config.json").read_text())
    kept = [name for name in ALL if name in holdable()]
    assert written["process"]["capabilities"] == {name: kept for name in capabilities}
    assert written["root"] == {}


@pytest.mark.integration
def test_exec_keeps_only_capabilities_this_machine_can_hold(tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": {"bounding": list(ALL), "effective": list(ALL)}}))
    run_runtime("exec", "--process", str(process), "container-1")
    written = json.loads(process.read_text())
    assert written["capabilities"]["bounding"] == [name for name in ALL if name in holdable()]
    assert written["args"] == ["sh"]


@pytest.mark.integration
def test_a_privileged_container_starts_on_this_machine() -> None:
    """make test's docker-setup makes it so (kind's nodes are privileged containers)."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "harness-base:bookworm", "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
