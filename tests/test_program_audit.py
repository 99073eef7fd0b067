"""The suite's check that it uses only programs `make test` installs (tests/conftest.py, tests/program_audit)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lanes import LANES, lane_of

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "program_audit"))
from provided_programs import (  # noqa: E402
    go_built_programs_of_make_test,
    installed_packages_of_make_test,
    provided_programs,
)

INNER_CONFTEST = """
from tests.conftest import _programs_used_are_installed_by_make_test, pytest_sessionfinish  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: starts real processes")
"""

INNER_TESTS = """
import shutil
import subprocess
import sys

import pytest


def test_looks_up_a_program_nothing_installs():
    assert shutil.which("harness-audit-no-such-program") is None


@pytest.mark.integration
def test_a_child_process_executes_a_program_nothing_installs(tmp_path):
    child = tmp_path.parent / "child.py"
    child.write_text(
        "import subprocess\\ntry:\\n    subprocess.run(['harness-audit-child-program'])\\nexcept OSError:\\n    pass\\n"
    )
    subprocess.run([sys.executable, str(child)], check=True)


@pytest.mark.integration
def test_uses_only_installed_programs():
    assert subprocess.run(["sh", "-c", "true"]).returncode == 0
    assert shutil.which("iptables") is not None


def test_starts_a_process_without_saying_so():
    assert subprocess.run(["true"]).returncode == 0
"""


def _run_inner_suite(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    # A log of its own: the inner suite's uses must not reach this test's.
    env = {key: value for key, value in os.environ.items() if key != "HARNESS_PROGRAM_AUDIT"}
    env["PYTHONPATH"] = str(REPO)
    env["HARNESS_PROGRAM_AUDIT_PROJECT"] = str(tmp_path)
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path / "test_inner.py")),
            f"--basetemp={tmp_path / 'inner'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.integration
def test_a_test_that_uses_a_program_make_test_does_not_install_fails(tmp_path: Path) -> None:
    result = _run_inner_suite(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "4 passed, 3 errors" in output, output  # the check fails a test at its teardown
    assert (
        "test_inner.py::test_looks_up_a_program_nothing_installs looks up the program 'harness-audit-no-such-program', "
        "which no install step of `make test` provides"
    ) in output
    # Through PYTHONPATH, the audit reaches the test's child processes too.
    assert "executes the program 'harness-audit-child-program'" in output
    # A test's markers say what it exercises (its lane follows from them): one that starts a process says so.
    assert (
        "test_inner.py::test_starts_a_process_without_saying_so starts processes (true) but is not marked integration"
    ) in output
    assert "test_uses_only_installed_programs starts processes" not in output


def test_the_install_steps_of_make_test_are_read_from_the_makefile_and_its_scripts() -> None:
    packages = installed_packages_of_make_test()
    # TEST_PACKAGES in the Makefile, the lint step's shellcheck and docker-setup.sh's own installs.
    assert {"prometheus", "wrk", "iptables", "shellcheck", "docker.io", "debootstrap"} <= packages
    # Packages only a bench installs are not among them.
    assert not any(name in packages for name in ("nginx",))
    # Programs built with Go by the lint step and for the Kubernetes target's chart rendering.
    assert {"actionlint", "helm", "kind"} <= go_built_programs_of_make_test()


def test_programs_are_provided_by_package_by_name_and_by_path() -> None:
    provided = provided_programs()
    assert provided.provides("sh") and provided.provides("/bin/sh")
    # Go-built and venv programs the install steps make.
    assert provided.provides(str(Path(sys.prefix) / "bin" / "pytest"))
    assert provided.provides(str(Path.home() / ".cache" / "harness-cluster" / "v1.34.4-x" / "bin" / "kubelet"))
    assert not provided.provides("harness-audit-no-such-program")
    assert not provided.provides("/opt/elsewhere/harness-audit-no-such-program")


def test_every_combination_of_markers_has_exactly_one_lane() -> None:
    names = ("integration", "cluster", "kind", "load_timing", "machine_wide", "capacity", "absent_program")
    for size in range(len(names) + 1):
        for markers in itertools.combinations(names, size):
            assert lane_of(set(markers)) in LANES
    assert lane_of(set()) == "unit"
    assert lane_of({"integration"}) == "local"
    assert lane_of({"integration", "cluster"}) == "cluster"
    assert lane_of({"integration", "kind"}) == "kind"
    assert lane_of({"integration", "cluster", "load_timing"}) == "load-timing"
    assert lane_of({"integration", "load_timing", "machine_wide"}) == "machine-wide"
    assert lane_of({"integration", "capacity"}) == "capacity"
    assert lane_of({"integration", "capacity", "machine_wide"}) == "machine-wide"
