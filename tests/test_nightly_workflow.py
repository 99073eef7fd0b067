"""The nightly workflow's shell steps, run here as a GitHub runner runs them: `bash -eo pipefail` in a checkout,
the job's env, a throwaway HOME, $GITHUB_PATH and $GITHUB_OUTPUT files. `Install kind` (go install from the Go
module proxy) and `Compare with the previous night` run as written; `Load test on kind` runs in
tests/targets/test_kind_cluster.py where Docker can start kind's nodes. The steps that call GitHub (gh, the
artifact actions) cannot run here: their shape is checked, and actionlint checks them in `make lint`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECORDED_RUN = ROOT / "tests" / "fixtures" / "run_recorded"

pytestmark = pytest.mark.integration


def job() -> dict[str, Any]:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    (only,) = workflow["jobs"].values()
    return dict(only)


def step(name: str) -> dict[str, Any]:
    (found,) = [s for s in job()["steps"] if s.get("name") == name]
    return dict(found)


def run_step(name: str, workspace: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step(name)["run"]],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def runner_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    go_env = subprocess.run(
        ["go", "env", "GOMODCACHE", "GOCACHE"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HARNESS_", "KIND_"))},
        **{k: str(v) for k, v in job()["env"].items()},
        "HOME": str(home),
        # setup-go's cache on a runner; here the machine's, so nothing is fetched twice.
        "GOMODCACHE": go_env[0],
        "GOCACHE": go_env[1],
        "GITHUB_PATH": str(tmp_path / "github_path"),
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_WORKSPACE": str(tmp_path / "workspace"),
    }


def test_install_kind_step_installs_kind_as_kind_documents(tmp_path: Path) -> None:
    env = runner_env(tmp_path)
    (tmp_path / "workspace").mkdir()
    result = run_step("Install kind", tmp_path / "workspace", env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"kind {env['KIND_VERSION']} " in result.stdout and "docker " in result.stdout
    (path,) = (tmp_path / "github_path").read_text().split()
    assert Path(path, "kind").is_file() and Path(path).is_relative_to(tmp_path / "home")


def test_compare_step_judges_tonight_against_the_previous_night(tmp_path: Path) -> None:
    """The previous night's run directory (here the recorded run) against tonight's (the same run): no
    regression, exit 0 and the HTML report; and a night without a verdict fails the step rather than comparing."""
    env = runner_env(tmp_path)
    workspace = tmp_path / "workspace"
    shutil.copytree(RECORDED_RUN, workspace / "previous" / "20250301T000000Z-night-1")
    shutil.copytree(RECORDED_RUN, workspace / "reports" / "20250302T000000Z-night-2")
    (workspace / ".venv").symlink_to(ROOT / ".venv")
    result = run_step("Compare with the previous night", workspace, env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (workspace / "reports" / "comparison.html").is_file()
    (workspace / "reports" / "20250302T000000Z-night-2" / "verdict.json").unlink()
    result = run_step("Compare with the previous night", workspace, env)
    assert result.returncode == 1 and "left no verdict" in result.stdout


def test_a_red_night_still_keeps_its_run_and_is_compared() -> None:
    """Every step after the load test runs whatever its outcome (if: always()), so a FAIL verdict or a harness
    error still uploads reports/ and is compared with the previous night that kept a run."""
    steps = job()["steps"]
    names = [s.get("name") for s in steps]
    after = steps[names.index("Load test on kind") + 1 :]
    assert after and all(str(s.get("if", "")).startswith("always()") for s in after), after
    uploads = [s for s in after if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert uploads[0]["with"]["path"] == "reports/"
    assert "--status completed" in step("Find the previous night")["run"]
