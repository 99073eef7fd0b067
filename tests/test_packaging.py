"""The harness as a package: `make dist`'s wheel and sdist carry everything read at run time (charts/,
dockerfiles/, the schemas, the dashboard, reached in the clone through harness/_data's symlinks), pass `twine
check`, and a fresh venv holding only the wheel (no clone on its path, run from outside the clone) runs the local
and external targets, writes every report, and builds images."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_external_integration import start_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "harness" / "_data"
REPORTS = ("verdict.json", "report.html", "report.md", "junit.xml", "metadata.json", "client_intervals.jsonl")
LOCAL_BASE_IMAGE = "harness-python:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

pytestmark = pytest.mark.integration


def package_data() -> dict[str, bytes]:
    """Every file under harness/_data, through its symlinks, as the wheel must hold it: path -> bytes."""
    found: dict[str, bytes] = {}
    for directory, _, files in os.walk(DATA, followlinks=True):
        for name in files:
            path = Path(directory) / name
            found[f"harness/_data/{path.relative_to(DATA)}"] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "uv", "build", "--quiet", "--out-dir", str(out), str(ROOT)], check=True)
    return out


def test_the_data_links_point_at_the_repository_layout() -> None:
    links = {path.name: path.readlink() for path in DATA.iterdir()}
    assert all(path.is_symlink() for path in DATA.iterdir())
    assert links["charts"] == Path("../../charts") and links["dockerfiles"] == Path("../../dockerfiles")
    assert links["verdict.schema.json"] == Path("../../docs/verdict.schema.json")
    expected = package_data()
    assert "harness/_data/charts/model-service/Chart.yaml" in expected
    assert "harness/_data/dockerfiles/loadgen.Dockerfile" in expected


def test_the_wheel_and_the_sdist_carry_the_package_data_and_pass_twine(dist: Path) -> None:
    expected = package_data()
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name: archive.read(name) for name in archive.namelist() if name.startswith("harness/_data/")}
    assert in_wheel == expected
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        prefix = sdist.name.removesuffix(".tar.gz") + "/"
        in_sdist = {
            member.name.removeprefix(prefix): archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile() and member.name.startswith(prefix + "harness/_data/")
        }
    assert in_sdist == expected
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "twine"), "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def wheel_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its digits and docker extras, nothing of the clone."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    (wheel,) = dist.glob("*.whl")
    uv = [sys.executable, "-m", "uv"]
    # With pip in it (--seed), as python -m venv makes it: `bentoml build` installs uv with it.
    subprocess.run([*uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)], check=True)
    install = [*uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(venv / "bin" / "python")]
    subprocess.run([*install, f"{wheel}[digits,docker]"], check=True)
    return venv


def outside_env(venv: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the clone holding a copy of the digits example."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    shutil.copytree(ROOT / "examples" / "digits", tmp_path / "digits", ignore=shutil.ignore_patterns("__pycache__"))
    yield tmp_path


def harness(venv: Path, workdir: Path, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "harness"), *args],
        cwd=workdir,
        env=outside_env(venv),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_dir_of(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("run directory: "))
    return Path(line.removeprefix("run directory: "))


def test_the_wheel_alone_imports_nothing_from_the_clone(wheel_venv: Path, workdir: Path) -> None:
    probe = subprocess.run(
        [
            str(wheel_venv / "bin" / "python"),
            "-c",
            "import sys, harness, harness.resources as r; print(harness.__file__); print(r.data_path('charts'));"
            "print(r.clone_dir()); print('\\n'.join(sys.path))",
        ],
        cwd=workdir,
        env=outside_env(wheel_venv),
        capture_output=True,
        text=True,
        check=True,
    )
    module, charts, clone, *path = probe.stdout.splitlines()
    assert Path(module).is_relative_to(wheel_venv) and Path(charts).is_relative_to(wheel_venv)
    assert (Path(charts) / "model-service" / "Chart.yaml").is_file() and not Path(charts).is_symlink()
    assert clone == "None"
    assert not [entry for entry in path if entry and Path(entry).resolve().is_relative_to(ROOT)]


def test_the_wheel_alone_runs_the_local_target_and_writes_every_report(wheel_venv: Path, workdir: Path) -> None:
    scenario = {
        "name": "wheel-local",
        "service": {"path": "digits", "service": "service:DigitsClassifier", "endpoint": "/classify"},
        "target": {"kind": "local", "replicas": 1},
        "stages": [
            {"name": "warmup", "duration_s": 3, "users": 2, "judged": False},
            {"name": "steady", "duration_s": 8, "users": 4},
        ],
        "objectives": [{"metric": "error_rate", "max": 0.5}],
    }
    (workdir / "local.yaml").write_text(yaml.safe_dump(scenario))
    result = harness(wheel_venv, workdir, "run", "local.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_dir_of(result.stdout)
    assert run_dir.is_relative_to(workdir / "reports")
    for name in REPORTS:
        assert (run_dir / name).is_file(), name
    assert "Verdict: PASS" in result.stdout


def test_the_wheel_alone_runs_the_external_target(wheel_venv: Path, workdir: Path) -> None:
    server = start_server()
    url = next(server)
    try:
        scenario = {
            "name": "wheel-external",
            "target": {"kind": "external", "urls": [url]},
            "service": {"endpoint": "/predict"},
            "stages": [{"name": "steady", "duration_s": 6, "arrival_rate_rps": 20}],
            "objectives": [{"metric": "error_rate", "max": 0.5}],
        }
        (workdir / "external.yaml").write_text(yaml.safe_dump(scenario))
        result = harness(wheel_venv, workdir, "run", "external.yaml")
    finally:
        server.close()
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_dir_of(result.stdout)
    for name in REPORTS:
        assert (run_dir / name).is_file(), name


def test_the_wheel_alone_builds_the_service_image_and_the_load_generator_image(wheel_venv: Path, workdir: Path) -> None:
    import docker

    scenario = {"name": "wheel-build", "service": {"path": "digits", "service": "service:DigitsClassifier"}}
    scenario["stages"] = [{"name": "s", "duration_s": 1, "users": 1}]  # type: ignore[assignment]
    (workdir / "build.yaml").write_text(yaml.safe_dump(scenario))
    tag = f"harness-wheel-test:{secrets.token_hex(4)}"
    env_home = workdir / "bentoml-home"
    result = subprocess.run(
        [
            str(wheel_venv / "bin" / "harness"),
            *("build", "build.yaml", "--base-image", LOCAL_BASE_IMAGE, "--ca-bundle", CA_BUNDLE, "--tag", tag),
        ],
        cwd=workdir,
        env={**outside_env(wheel_venv), "BENTOML_HOME": str(env_home)},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    client = docker.from_env()
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(tag), result.stdout
        assert client.images.get(tag).labels["harness.bento"].startswith("digits_classifier:")
        # The in-cluster load generator's image, built from the wheel's modules (no pyproject.toml anywhere).
        loadgen = subprocess.run(
            [
                str(wheel_venv / "bin" / "python"),
                "-c",
                "from harness.build import LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, build_tool_image;"
                f"print(build_tool_image(LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, {LOCAL_BASE_IMAGE!r}, "
                f"__import__('pathlib').Path({CA_BUNDLE!r})).tag)",
            ],
            cwd=workdir,
            env=outside_env(wheel_venv),
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        assert loadgen.returncode == 0, loadgen.stdout + loadgen.stderr
        version = subprocess.run(
            ["docker", "run", "--rm", loadgen.stdout.strip(), "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert version.stdout.startswith("locust 2.")
    finally:
        if any(tag in image.tags for image in client.images.list(name=tag.split(":")[0])):
            client.images.remove(tag)
        client.close()
