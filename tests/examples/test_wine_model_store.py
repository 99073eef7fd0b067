"""The wine example end to end: trained into a model store, served from it on the local and Docker targets
and in a virtual environment of its own, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
WINE = ROOT / "examples" / "wine"
HARNESS = [sys.executable, "-m", "harness.cli"]
DOCKER_BUILD = ["--base-image", "harness-python:bookworm", "--ca-bundle", "/etc/ssl/certs/ca-certificates.crt"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home whose model store holds wine-gbc, saved by the example's own train step."""
    home = tmp_path_factory.mktemp("wine_home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run([sys.executable, str(WINE / "train.py")], env=env, check=True, timeout=180, capture_output=True)
    return home


def store_files(home: Path) -> list[str]:
    return sorted(str(path.relative_to(home)) for path in (home / "models").rglob("*"))


def short_wine_scenario(tmp_path: Path, **service: Any) -> Path:
    """loadtests/wine.yaml with one replica and 11 s of load."""
    data = yaml.safe_load((ROOT / "loadtests" / "wine.yaml").read_text())
    data["service"].update(path=str(WINE), **service)
    data["payload"]["file"] = str(WINE / "held_out.jsonl")
    data["target"]["replicas"] = 1
    # Generous: a Docker replica is held to its half-core request, and other lanes of `make test` load the
    # machine; how fast it starts is not what these tests check (a replica that exits fails the start at once).
    data["target"]["startup_timeout_s"] = 240
    # Open stages: these tests check where the model comes from, not how fast it is served, and users would keep a
    # core busy beside the other lanes of `make test` for as long as they run.
    data["stages"] = [
        {"name": "warmup", "duration_s": 3, "arrival_rate_rps": 10, "judged": False},
        {"name": "open-20rps", "duration_s": 8, "arrival_rate_rps": 20, "arrival": "constant"},
    ]
    data["objectives"] = [{"metric": "error_rate", "max": 0.01}]
    data["output"] = {"dir": str(tmp_path / "reports")}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(scenario: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "run", str(scenario), *args],
        cwd=scenario.parent,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def events(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    (run_dir,) = (tmp_path / "reports").iterdir()
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [event["detail"] for event in map(json.loads, lines) if event["kind"] == kind]


def verdict(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = (tmp_path / "reports").iterdir()
    return dict(json.loads((run_dir / "verdict.json").read_text()))


def assert_every_request_answered(tmp_path: Path) -> None:
    """The model served: every request of every stage answered, none failed. The error-rate objective may
    still say WARN (a busy machine sends too few requests in 9 s to prove the bound), never FAIL."""
    judged = verdict(tmp_path)
    assert all(stage["requests"] > 0 and stage["failures"] == 0 for stage in judged["stages"]), judged["stages"]
    assert judged["status"] in ("PASS", "WARN")


def test_local_replicas_read_the_callers_model_store_read_only(wine_store: Path, tmp_path: Path) -> None:
    before = store_files(wine_store)
    # The store of the calling environment's BENTOML_HOME, as a user who ran `make wine-model` has it.
    result = run(short_wine_scenario(tmp_path), env={"BENTOML_HOME": str(wine_store)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (started,) = events(tmp_path, "replica_started")
    assert started["model_store"] == str(wine_store / "models")
    assert started["model_store_read_only"] is (os.geteuid() == 0)
    assert_every_request_answered(tmp_path)
    assert store_files(wine_store) == before, "a replica wrote into the user's model store"


def test_an_empty_model_store_fails_the_start_naming_the_model_and_the_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty_home"
    result = run(short_wine_scenario(tmp_path, model_store=str(empty)))
    assert result.returncode == ExitCode.INFRASTRUCTURE, "replicas that cannot start are a failed deployment"
    assert "wine-gbc" in result.stderr and str(empty / "models") in result.stderr


def test_replicas_run_in_the_services_own_virtual_environment(wine_store: Path, tmp_path: Path) -> None:
    # A venv holding a module the harness's environment lacks; the harness's packages are reached by a .pth line.
    venv = tmp_path / "service-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "harness_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "only_in_service_env.py").write_text("MARK = 1\n")
    project = tmp_path / "project"
    shutil.copytree(WINE, project)
    service_py = project / "service.py"
    service_py.write_text(
        service_py.read_text().replace("import bentoml\n", "import bentoml\nimport only_in_service_env\n", 1)
    )
    with_venv = short_wine_scenario(tmp_path, model_store=str(wine_store), python=str(venv))
    data = yaml.safe_load(with_venv.read_text())
    data["service"]["path"] = str(project)
    with_venv.write_text(yaml.safe_dump(data))
    result = run(with_venv)
    assert result.returncode == 0, result.stderr[-3000:]

    missing = tmp_path / "no-venv"
    result = run(with_venv, "--set", f"service.python={missing}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "service.python" in result.stderr


def test_docker_replicas_run_an_image_holding_the_model(wine_store: Path, tmp_path: Path) -> None:
    result = run(short_wine_scenario(tmp_path, model_store=str(wine_store)), "--target", "docker", *DOCKER_BUILD)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (built,) = events(tmp_path, "image_built")
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "ls", built["image"], "/home/bentoml/bento/models/wine-gbc"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "latest" in listing.stdout.split()
    assert_every_request_answered(tmp_path)
