"""The harness as a newcomer installs it: the README's quick start, every command of it (`make dist`, a venv holding
the wheel installed with pip, a first run of the example and a run from flags against a service already running),
and what its wheel must hold: `make dist`'s wheel and sdist carry everything read at run time (charts/,
dockerfiles/, the schemas, the dashboard, reached in the clone through harness/_data's symlinks) and pass `twine
check`, and the quick start's venv, run from outside the clone, imports nothing of the clone and builds the
service's and the load generator's images."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.processes import free_port as pick_free_port

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "harness" / "_data"
README = ROOT / "README.md"
REPORTS = ("verdict.json", "report.html", "report.md", "junit.xml", "metadata.json", "client_intervals.jsonl")
LOCAL_BASE_IMAGE = "harness-python:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where the quick start's `pip install` keeps the wheels it downloads, across runs (its HOME is a new directory).
PIP_CACHE = Path.home() / ".cache" / "harness-quick-start-pip"
STATUS_LINE = re.compile(r"^status: (PASS|WARN|FAIL|INCONCLUSIVE) \(exit code (\d+)\)", re.MULTILINE)

pytestmark = pytest.mark.integration


def quick_start_commands() -> list[str]:
    """The commands of the README's quick start, in order: every line of its sh blocks."""
    section = README.read_text().split("<!-- quick start", 1)[1].split("<!-- end of quick start -->", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@dataclass(frozen=True)
class QuickStart:
    """What running the quick start left: its commands (the example's port replaced), their output, and where its
    HOME (with the venv the README makes) and reports are."""

    foreground: list[str]
    result: subprocess.CompletedProcess[str]
    port: str
    home: Path
    reports: Path

    @property
    def venv(self) -> Path:
        return self.home / "harness-venv"

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> QuickStart:
    """The quick start as a reader runs it, from the clone, with a new HOME (its venv lands there) and the
    machine's Python; only the example service's port 3000 becomes a free one (another session may hold 3000).
    Run once: the wheel's other tests below use its `make dist` and its venv."""
    from harness.processes import OWNER_ENV, RUN_ENV, kill_all, marked_processes, owner_id

    tmp_path = tmp_path_factory.mktemp("quick-start")
    port = str(pick_free_port())
    script = ["set -u", f"cd {ROOT}"]
    for command in quick_start_commands():
        script.append(command.replace("3000", port))
        if not command.endswith("&"):
            script.append('echo "quick-start-exit: $?"')
    home = tmp_path / "home"
    home.mkdir()
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    # Every process the script starts carries this mark, the example service's workers too: all stopped below.
    run_id = f"quick-start-{secrets.token_hex(3)}"
    unset = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    env = {
        # The machine's settings (its CA bundle for the package index, proxies) stay; the dev venv's PATH does not.
        **{name: value for name, value in os.environ.items() if name not in unset},
        "HOME": str(home),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "UV_CACHE_DIR": str(Path.home() / ".cache" / "uv"),
        "PIP_CACHE_DIR": str(PIP_CACHE),
        # pip compiles every module it installs (12 of its 34 CPU seconds here); the two runs import a fraction of
        # them, and with bytecode writing on (unset above) the first process to import a module compiles it once.
        "PIP_NO_COMPILE": "1",
        "HARNESS_OUT": str(tmp_path / "reports"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        OWNER_ENV: owner_id(),
        RUN_ENV: run_id,
    }
    try:
        result = subprocess.run(
            ["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True, timeout=1500, check=False
        )
    finally:
        kill_all([process for process, _ in marked_processes(run_id=run_id)])
    foreground = [c.replace("3000", port) for c in quick_start_commands() if not c.endswith("&")]
    return QuickStart(foreground, result, port, home, tmp_path / "reports")


def test_the_data_links_point_at_the_repository_layout() -> None:
    links = {path.name: path.readlink() for path in DATA.iterdir()}
    assert all(path.is_symlink() for path in DATA.iterdir())
    assert links["charts"] == Path("../../charts") and links["dockerfiles"] == Path("../../dockerfiles")
    assert links["verdict.schema.json"] == Path("../../docs/verdict.schema.json")
    expected = package_data()
    assert "harness/_data/charts/model-service/Chart.yaml" in expected
    assert "harness/_data/dockerfiles/loadgen.Dockerfile" in expected


def test_the_quick_start_shows_install_a_first_run_and_a_run_from_flags() -> None:
    commands = quick_start_commands()
    assert commands[0] == "make dist" and any(c.startswith("pip install 'dist/") for c in commands)
    assert "harness run loadtests/quickstart.yaml" in commands
    assert any(c.startswith("harness run --url ") and "--objective" in c for c in commands)


# Minutes of pip and two runs: its lane starts this file first rather than last.
@pytest.mark.starts_first
def test_every_command_of_the_readme_quick_start_runs(quick_start: QuickStart) -> None:
    result, output = quick_start.result, quick_start.output
    codes = [int(code) for code in re.findall(r"^quick-start-exit: (\d+)$", result.stdout, re.MULTILINE)]
    assert len(codes) == len(quick_start.foreground), output[-5000:]
    runs = STATUS_LINE.findall(result.stdout)
    assert len(runs) == 2, output[-5000:]
    for command, code in zip(quick_start.foreground, codes, strict=True):
        if command.startswith("harness run"):
            # A verdict, whichever it is on a machine other tests load: PASS, WARN, FAIL or INCONCLUSIVE.
            assert code in (0, 1, 3), (command, output[-5000:])
        else:
            assert code == 0, (command, output[-5000:])
    assert [int(code) for _, code in runs] == [
        code for command, code in zip(quick_start.foreground, codes, strict=True) if command.startswith("harness run")
    ]
    # The wheel's local and external targets wrote every report (its package data, not the clone's: the venv's
    # harness reads its data beside its modules, checked from outside the clone below).
    run_dirs = sorted(quick_start.reports.iterdir())
    assert [path.name.split("-", 1)[1].rsplit("-", 1)[0] for path in run_dirs] == [
        "digits-quickstart",
        "127.0.0.1-" + quick_start.port,
    ]
    for run_dir in run_dirs:
        for name in REPORTS:
            assert (run_dir / name).is_file(), (run_dir, name)
    assert (quick_start.venv / "bin" / "harness").is_file(), "the quick start's venv holds the harness"


def package_data() -> dict[str, bytes]:
    """Every file under harness/_data, through its symlinks, as the wheel must hold it: path -> bytes."""
    found: dict[str, bytes] = {}
    for directory, _, files in os.walk(DATA, followlinks=True):
        for name in files:
            path = Path(directory) / name
            found[f"harness/_data/{path.relative_to(DATA)}"] = path.read_bytes()
    return found


def quick_start_wheel(quick_start: QuickStart) -> Path:
    (wheel,) = (ROOT / "dist").glob("*.whl")
    assert (quick_start.venv / "bin" / "harness").is_file(), (
        "the quick start made no venv: " + quick_start.output[-3000:]
    )
    return wheel


def test_the_wheel_and_the_sdist_carry_the_package_data_and_pass_twine(quick_start: QuickStart) -> None:
    expected = package_data()
    wheel = quick_start_wheel(quick_start)
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name: archive.read(name) for name in archive.namelist() if name.startswith("harness/_data/")}
    assert in_wheel == expected
    (sdist,) = (ROOT / "dist").glob("*.tar.gz")
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


def test_the_wheel_alone_imports_nothing_from_the_clone(quick_start: QuickStart, workdir: Path) -> None:
    quick_start_wheel(quick_start)
    venv = quick_start.venv
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, harness, harness.resources as r; print(harness.__file__); print(r.data_path('charts'));"
            "print(r.clone_dir()); print('\\n'.join(sys.path))",
        ],
        cwd=workdir,
        env=outside_env(venv),
        capture_output=True,
        text=True,
        check=True,
    )
    module, charts, clone, *path = probe.stdout.splitlines()
    assert Path(module).is_relative_to(venv) and Path(charts).is_relative_to(venv)
    assert (Path(charts) / "model-service" / "Chart.yaml").is_file() and not Path(charts).is_symlink()
    assert clone == "None"
    assert not [entry for entry in path if entry and Path(entry).resolve().is_relative_to(ROOT)]


def test_the_wheel_alone_builds_the_service_image_and_the_load_generator_image(
    quick_start: QuickStart, workdir: Path
) -> None:
    import docker

    # The docker extra beside the quick start's [digits,plots], as docs/install.md says extras combine.
    wheel, venv = quick_start_wheel(quick_start), quick_start.venv
    install = [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    subprocess.run([*install, f"{wheel}[docker]"], check=True, env=outside_env(venv))
    scenario = {"name": "wheel-build", "service": {"path": "digits", "service": "service:DigitsClassifier"}}
    scenario["stages"] = [{"name": "s", "duration_s": 1, "users": 1}]  # type: ignore[assignment]
    (workdir / "build.yaml").write_text(yaml.safe_dump(scenario))
    tag = f"harness-wheel-test:{secrets.token_hex(4)}"
    env_home = workdir / "bentoml-home"
    result = subprocess.run(
        [
            str(venv / "bin" / "harness"),
            *("build", "build.yaml", "--base-image", LOCAL_BASE_IMAGE, "--ca-bundle", CA_BUNDLE, "--tag", tag),
        ],
        cwd=workdir,
        env={**outside_env(venv), "BENTOML_HOME": str(env_home)},
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
                str(venv / "bin" / "python"),
                "-c",
                "from harness.build import LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, build_tool_image;"
                f"print(build_tool_image(LOADGEN_DOCKERFILE, LOADGEN_REPOSITORY, {LOCAL_BASE_IMAGE!r}, "
                f"__import__('pathlib').Path({CA_BUNDLE!r})).tag)",
            ],
            cwd=workdir,
            env=outside_env(venv),
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
