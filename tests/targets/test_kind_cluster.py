"""kind for real: `harness run` on a kind cluster it creates from the node image that scripts/kind/node-image.sh
builds offline (kind's own recipes, from Go modules and Debian packages), the autoscaling scenario under the
chart's real HPA with load through the Service's NodePort on 127.0.0.1, and the cluster deleted after it;
and a harness interrupted (SIGINT, SIGTERM) or killed (SIGKILL) while kind creates the cluster leaves none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.targets.kind import cluster_owner
from tests.targets.cluster_support import run_cli, wait_for
from tests.targets.conftest import DIGITS_DIR, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

NODE_IMAGE_SCRIPT = ROOT / "scripts" / "kind" / "node-image.sh"


@pytest.fixture(scope="module")
def kind_setup() -> tuple[Path, str]:
    """kind and the node image, as `make kind-setup` builds them (cached: seconds when built before)."""
    result = subprocess.run(
        ["bash", str(NODE_IMAGE_SCRIPT), "build"], capture_output=True, text=True, timeout=3600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kind, image = result.stdout.split()[-2:]
    return Path(kind), image


def kind_env(kind: Path, home: Path) -> dict[str, str]:
    """The harness's environment: kind on PATH, and a HOME of its own, whose ~/.kube must stay untouched."""
    home.mkdir(exist_ok=True)
    return {**os.environ, "PATH": f"{os.environ['PATH']}:{kind.parent}", "HOME": str(home)}


def kind_clusters(kind: Path) -> list[str]:
    result = subprocess.run([str(kind), "get", "clusters"], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.split()


def node_containers(name: str) -> list[str]:
    result = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={name}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def kind_scenario(name: str, image: str, node_image: str, stages: list[dict[str, Any]]) -> dict[str, Any]:
    """loadtests/autoscale-cpu.yaml (the nightly's) on a kind cluster named `name`, as `make loadtest TARGET=kind`
    sets it, with the given stages."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "loadtests" / "autoscale-cpu.yaml").read_text())
    data["service"]["path"] = str(DIGITS_DIR)
    data["stages"] = stages
    data["target"]["kind"] = "kubernetes"
    data["target"]["kubernetes"] = {
        "kind_cluster": name,
        "kind_node_image": node_image,
        "load_route": "node-port",
        "image": image,
        "rollout_timeout_s": 240,
    }
    return data


def test_autoscale_scenario_on_a_kind_cluster_it_creates_and_deletes(
    kind_setup: tuple[Path, str], digits_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create, load, HPA 1 -> >= 2 and back, verdict, delete; the kubeconfig is .cluster's, never ~/.kube's."""
    kind, node_image = kind_setup
    name = f"harness-test-{uuid.uuid4().hex[:6]}"
    # Shorter than the nightly's stages, each still a few of the controller's 15 s sync periods: the step long
    # enough for a second pod to be ready, the cool-down for the 20 s scale-down stabilization and a step down.
    stages = [
        {"name": "baseline", "duration_s": 15, "arrival_rate_rps": 15},
        {"name": "step-up", "duration_s": 60, "arrival_rate_rps": 90},
        {"name": "cool-down", "duration_s": 70, "arrival_rate_rps": 10},
    ]
    home = tmp_path / "home"
    for key, value in kind_env(kind, home).items():
        monkeypatch.setenv(key, value)
    started_s = time.monotonic()
    try:
        run_dir = run_cli(kind_scenario(name, digits_image, node_image, stages), tmp_path, "kind")
    finally:
        print(f"kind run (create, load, HPA, delete): {time.monotonic() - started_s:.0f} s")
        leftovers = node_containers(name)
        if leftovers:
            subprocess.run([str(kind), "delete", "cluster", "--name", name], timeout=300, check=False)
    assert leftovers == [], "the harness deleted the cluster it created"
    assert name not in kind_clusters(kind)
    assert not (home / ".kube").exists(), "kind wrote to the user's ~/.kube/config"
    assert not (ROOT / ".cluster" / f"kind-{name}.kubeconfig").exists() and cluster_owner(name) is None
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert {"cluster": name, "created": True} in [e["detail"] for e in events if e["kind"] == "kind_cluster"]
    counts = [json.loads(line) for line in (run_dir / "replica_counts.jsonl").read_text().splitlines()]
    decisions = [e["detail"] for e in events if e["kind"] == "scale_decision"]
    assert decisions and all(d["source"] == "hpa" for d in decisions)
    peak = max(c["desired"] for c in counts)
    assert counts[0]["desired"] == 1 and peak >= 2 and max(c["ready"] for c in counts) >= 2, decisions
    assert counts[-1]["desired"] < peak, "the HPA scaled back in during the cool-down"
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["status"] in ("PASS", "WARN", "FAIL")
    # Load went through the NodePort: the step's requests were answered (not refused at a closed port).
    intervals = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
    step = [r for r in intervals if r["stage"] == "step-up"]
    assert sum(r["requests"] for r in step) > 0.8 * 90 * 60 * 0.5, "too few requests reached the pods"


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_harness_stopped_while_kind_creates_the_cluster_leaves_none(
    how: str, kind_setup: tuple[Path, str], digits_image: str, tmp_path: Path
) -> None:
    """SIGINT and SIGTERM: the run's own cleanup deletes the cluster; SIGKILL: its watchdog does."""
    kind, node_image = kind_setup
    name = f"harness-test-{uuid.uuid4().hex[:6]}"
    scenario = kind_scenario(name, digits_image, node_image, [{"name": "s", "duration_s": 30, "users": 1}])
    scenario["output"] = {"dir": str(tmp_path / "reports")}
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    # A non-interactive shell's background job starts with SIGINT ignored; the harness must get it as a user's.
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "scenario.yaml")],
        cwd=ROOT,
        env=kind_env(kind, tmp_path / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: bool(node_containers(name)) or harness.poll() is not None, "kind creating the node", 120)
        assert harness.poll() is None, harness.stderr.read().decode()[-2000:] if harness.stderr else ""
        harness.send_signal(getattr(signal, how))
        harness.wait(timeout=300)
        wait_for(lambda: not node_containers(name), "the cluster deleted", 180)
        assert name not in kind_clusters(kind)
        wait_for(lambda: cluster_owner(name) is None, "the owner record removed", 30)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        if node_containers(name):
            subprocess.run([str(kind), "delete", "cluster", "--name", name], timeout=300, check=False)
