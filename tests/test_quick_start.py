"""The README's quick start as a newcomer runs it: `make dist`, a venv holding the wheel alone (pip, as the README
says), a first run of the example and a run from flags against a service already running."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from harness.processes import free_port as pick_free_port
from tests.test_packaging import REPORTS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
# Where the quick start's `pip install` keeps the wheels it downloads, across runs (its HOME is a new directory).
PIP_CACHE = Path.home() / ".cache" / "harness-quick-start-pip"
STATUS_LINE = re.compile(r"^status: (PASS|WARN|FAIL|INCONCLUSIVE) \(exit code (\d+)\)", re.MULTILINE)


def quick_start_commands() -> list[str]:
    """The commands of the README's quick start, in order: every line of its sh blocks."""
    section = README.read_text().split("<!-- quick start", 1)[1].split("<!-- end of quick start -->", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_quick_start_shows_install_a_first_run_and_a_run_from_flags() -> None:
    commands = quick_start_commands()
    assert commands[0] == "make dist" and any(c.startswith("pip install 'dist/") for c in commands)
    assert "harness run loadtests/quickstart.yaml" in commands
    assert any(c.startswith("harness run --url ") and "--objective" in c for c in commands)


# Minutes of pip and two runs: its lane starts it first rather than last.
@pytest.mark.starts_first
def test_every_command_of_the_readme_quick_start_runs(tmp_path: Path) -> None:
    """The quick start as a reader runs it, from the clone, with a new HOME (its venv lands there) and the
    machine's Python; only the example service's port 3000 becomes a free one (another session may hold 3000)."""
    from harness.processes import OWNER_ENV, RUN_ENV, kill_all, marked_processes, owner_id

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
    env = {
        # The machine's settings (its CA bundle for the package index, proxies) stay; the dev venv's PATH does not.
        **{name: value for name, value in os.environ.items() if name not in ("VIRTUAL_ENV", "PYTHONPATH")},
        "HOME": str(home),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "UV_CACHE_DIR": str(Path.home() / ".cache" / "uv"),
        "PIP_CACHE_DIR": str(PIP_CACHE),
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
    output = result.stdout + result.stderr
    codes = [int(code) for code in re.findall(r"^quick-start-exit: (\d+)$", result.stdout, re.MULTILINE)]
    foreground = [c.replace("3000", port) for c in quick_start_commands() if not c.endswith("&")]
    assert len(codes) == len(foreground), output[-5000:]
    runs = STATUS_LINE.findall(result.stdout)
    assert len(runs) == 2, output[-5000:]
    for command, code in zip(foreground, codes, strict=True):
        if command.startswith("harness run"):
            # A verdict, whichever it is on a machine other tests load: PASS, WARN, FAIL or INCONCLUSIVE.
            assert code in (0, 1, 3), (command, output[-5000:])
        else:
            assert code == 0, (command, output[-5000:])
    assert [int(code) for _, code in runs] == [
        code for command, code in zip(foreground, codes, strict=True) if command.startswith("harness run")
    ]
    run_dirs = sorted((tmp_path / "reports").iterdir())
    assert [path.name.split("-", 1)[1].rsplit("-", 1)[0] for path in run_dirs] == [
        "digits-quickstart",
        "127.0.0.1-" + port,
    ]
    for run_dir in run_dirs:
        for name in REPORTS:
            assert (run_dir / name).is_file(), (run_dir, name)
    installed = home / "harness-venv" / "bin" / "harness"
    assert installed.is_file(), "the quick start's venv holds the harness"
