"""kind for real: `harness run` on a kind cluster it creates from the node image that scripts/kind/node-image.sh
builds offline (kind's own recipes, from Go modules and Debian packages), the autoscaling scenario under the
chart's real HPA with load through the Service's NodePort on 127.0.0.1, and the cluster deleted after it;
and a harness interrupted (SIGINT, SIGTERM) or killed (SIGKILL) while kind creates the cluster leaves none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.targets.kind import cluster_owner, privileged_failure
from tests.targets.conftest import DIGITS_DIR, ROOT
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kind]

NODE_IMAGE_SCRIPT = ROOT / "scripts" / "kind" / "node-image.sh"


def privileged_containers() -> str | None:
    """None when Docker runs privileged containers (kind's nodes are), else Docker's error. On the development
    machine: "runc create failed: unable to start container process: unable to apply caps: operation not
    permitted" (its capability bounding set lacks CAP_SYS_RESOURCE, which --privileged asks for)."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "harness-base:bookworm", "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return None if result.returncode == 0 else privileged_failure(result.stderr)


@pytest.fixture(scope="module")
def privileged_failure_here() -> str | None:
    """Docker's error for a privileged container on this machine, asked once (None: it runs them)."""
    return privileged_containers()


@pytest.fixture
def privileged(privileged_failure_here: str | None) -> None:
    """kind's nodes are privileged containers: make test's docker-setup gives Docker a runtime that starts them on
    this machine (scripts/docker/runc-bounded); without it every kind test would fail alike, so this says why once."""
    if privileged_failure_here is not None:
        pytest.fail(f"Docker cannot start kind's nodes here (run scripts/docker-setup.sh): {privileged_failure_here}")


@pytest.fixture(scope="module")
def kind_setup() -> tuple[Path, str]:
    """kind (on PATH: make test puts the Makefile's KIND there) and the node image, as `make kind-setup` builds
    them (cached: a second when built before)."""
    kind = shutil.which("kind")
    assert kind is not None, "kind is not on PATH (make kind-setup installs it; make test puts it on PATH)"
    result = subprocess.run(
        ["bash", str(NODE_IMAGE_SCRIPT), "build"], capture_output=True, text=True, timeout=3600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(kind), result.stdout.split()[-1]


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


def workflow_steps() -> dict[str, dict[str, Any]]:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    (job,) = workflow["jobs"].values()
    return {"env": job["env"], **{step["name"]: step for step in job["steps"] if "name" in step}}


def run_step(step: dict[str, Any], workspace: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A workflow `run:` step as a GitHub runner runs it: bash -eo pipefail, in the workspace."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.mark.usefixtures("privileged")
def test_the_nightly_steps_run_make_loadtest_kind_under_the_real_hpa_and_delete_the_cluster(
    tmp_path: Path,
) -> None:
    """.github/workflows/nightly.yml's shell steps, run here as a runner would: a fresh checkout, a throwaway
    HOME, the job's env, $GITHUB_PATH between steps. `Install kind` runs as written (`go install`, the Go module
    proxy); `Load test on kind` runs as written, with two env values a runner does not need: the offline node
    image (a runner pulls kind's default) and a shorter copy of the scenario; the comparison runs against a copy
    of tonight's run (the previous night's comes from GitHub). The run: create, load through the NodePort, the
    HPA scales 1 -> >= 2 and back, a verdict, the cluster deleted; ~/.kube never written."""
    steps = workflow_steps()
    workspace, home = tmp_path / "workspace", tmp_path / "home"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(workspace)], check=True, timeout=120)
    # The venv of this checkout (the runner's would be made by the same make loadtest): made older than the
    # clone's pyproject.toml, make would reinstall it, so the clone's is dated back.
    (workspace / ".venv").symlink_to(ROOT / ".venv")
    os.utime(workspace / "pyproject.toml", (0, 0))
    home.mkdir()
    name = f"harness-test-{uuid.uuid4().hex[:6]}"
    scenario = yaml.safe_load((workspace / steps["env"]["SCENARIO"]).read_text())
    # Each stage still a few of the controller's 15 s sync periods: the step long enough for a second pod to be
    # ready, the cool-down for the 20 s scale-down stabilization and a step down.
    durations_s = {"baseline": 15, "step-up": 60, "cool-down": 70}
    for stage in scenario["stages"]:
        stage["duration_s"] = durations_s[stage["name"]]
    (workspace / "loadtests" / "nightly-short.yaml").write_text(yaml.safe_dump(scenario))
    go_env = subprocess.run(
        ["go", "env", "GOMODCACHE", "GOCACHE"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    github_path = tmp_path / "github_path"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HARNESS_", "KIND_"))},
        **{k: str(v) for k, v in steps["env"].items()},
        "HOME": str(home),
        # The runner's setup-go would restore these; here the machine's, so kind's modules are not fetched again.
        "GOMODCACHE": go_env[0],
        "GOCACHE": go_env[1],
        # And the machine's cluster binaries and node image (their cache is under the real HOME).
        "HARNESS_CLUSTER_CACHE": str(Path.home() / ".cache" / "harness-cluster"),
        "GITHUB_PATH": str(github_path),
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_WORKSPACE": str(workspace),
        "SCENARIO": "loadtests/nightly-short.yaml",
        "KIND_NODE_IMAGE": "offline",
        "KIND_CLUSTER": name,
    }
    installed = run_step(steps["Install kind"], workspace, env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert "kind v0.33.0" in installed.stdout
    env["PATH"] = ":".join([*github_path.read_text().split(), env["PATH"]])
    started_s = time.monotonic()
    try:
        loadtest = run_step(steps["Load test on kind"], workspace, env)
    finally:
        print(f"make loadtest TARGET=kind (build, create, load, HPA, delete): {time.monotonic() - started_s:.0f} s")
        leftovers = node_containers(name)
        if leftovers:
            subprocess.run(["kind", "delete", "cluster", "--name", name], env=env, timeout=300, check=False)
    # The harness's exit code: 0 PASS, 1 FAIL (503s from pods short of CPU are a possible truth); 2 or more would
    # be a harness error. make exits 2 whenever its recipe fails and names the recipe's code.
    failed = re.search(r"make: \*\*\* \[.*loadtest\] Error (\d+)", loadtest.stderr)
    harness_code = int(failed.group(1)) if failed else loadtest.returncode
    assert harness_code in (0, 1), (loadtest.stdout + loadtest.stderr)[-4000:]
    assert leftovers == [], "the harness deleted the cluster it created"
    assert not (home / ".kube").exists(), "kind wrote to the user's ~/.kube/config"
    assert not (workspace / ".cluster" / f"kind-{name}.kubeconfig").exists() and cluster_owner(name) is None
    (run_dir,) = [path for path in (workspace / "reports").iterdir() if path.is_dir()]
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
    # The load went through the NodePort and the service answered it: most of the step's 90 rps got an HTTP
    # answer (a 503 of a pod short of CPU is one), not a refused or reset connection.
    intervals = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
    step = [r for r in intervals if r["stage"] == "step-up"]
    unanswered = sum(n for r in step for kind, n in r["errors"].items() if not kind.startswith("http_"))
    answered = sum(r["requests"] for r in step) - unanswered
    assert answered > 0.5 * 90 * 60, f"{answered} answered requests in the step ({unanswered} without an answer)"

    # Tonight's run against a copy of itself, as the compare step runs it: no regression, a report.
    shutil.copytree(run_dir, workspace / "previous" / run_dir.name)
    compared = run_step(steps["Compare with the previous night"], workspace, env)
    assert compared.returncode == 0, (compared.stdout + compared.stderr)[-3000:]
    assert (workspace / "reports" / "comparison.html").is_file()


@pytest.mark.usefixtures("privileged")
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
        wait_until(
            lambda: bool(node_containers(name)) or harness.poll() is not None,
            "kind creating the node",
            120,
            interval_s=0.5,
        )
        assert harness.poll() is None, harness.stderr.read().decode()[-2000:] if harness.stderr else ""
        harness.send_signal(getattr(signal, how))
        harness.wait(timeout=300)
        wait_until(lambda: not node_containers(name), "the cluster deleted", 180, interval_s=1.0)
        assert name not in kind_clusters(kind)
        wait_until(lambda: cluster_owner(name) is None, "the owner record removed", 30)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        if node_containers(name):
            subprocess.run([str(kind), "delete", "cluster", "--name", name], timeout=300, check=False)


def harness_run_kind(scenario: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump({**scenario, "output": {"dir": str(tmp_path / "reports")}}))
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "scenario.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def test_preflight_stops_a_kind_run_before_any_build_with_one_line(
    kind_setup: tuple[Path, str], tmp_path: Path
) -> None:
    """No kind on PATH, a node image this machine does not have, no Docker daemon: exit 2, one line each, before
    the service image is built (no image of the scenario's service is named, so a build would come next)."""
    kind, node_image = kind_setup
    scenario = kind_scenario(
        "harness-test-preflight", "unused:1", node_image, [{"name": "s", "duration_s": 5, "users": 1}]
    )
    del scenario["target"]["kubernetes"]["image"]
    env = kind_env(kind, tmp_path / "home")
    cases = {
        "kind: not found on PATH": {**env, "PATH": os.environ["PATH"].replace(str(kind.parent), "")},
        "finding node image harness.local/no-such-node:1 on this machine": env,
        "asking the Docker daemon": {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
    }
    for expected, case_env in cases.items():
        data = scenario
        if "no-such-node" in expected:
            data = {**scenario, "target": {**scenario["target"]}}
            data["target"]["kubernetes"] = {
                **scenario["target"]["kubernetes"],
                "kind_node_image": "harness.local/no-such-node:1",
            }
        started_s = time.monotonic()
        line = one_error_line(harness_run_kind(data, tmp_path, case_env))
        assert expected in line, line
        assert time.monotonic() - started_s < 60, "preflight is quick: nothing was built"
        events = "".join(path.read_text() for path in (tmp_path / "reports").glob("*/events.jsonl"))
        assert "image_built" not in events and "kind_cluster" not in events
