"""The optional extras: a run that needs a missing one stops before anything starts, with one line naming
the install command and exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import extras
from harness.config import load_scenario
from harness.errors import MissingExtraError
from harness.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "loadtests" / "default.yaml"


def harness_without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """The `harness` command in a process where `modules` cannot be imported, as if their extras were not
    installed."""
    code = (
        "import sys\n"
        f"for name in {list(modules)!r}:\n"
        "    sys.modules[name] = None\n"
        "from harness.cli import main\n"
        f"sys.argv = ['harness', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("target", "missing", "extra"),
    [("docker", ("docker",), "docker"), ("kubernetes", ("kubernetes",), "kubernetes")],
)
@pytest.mark.integration
def test_a_run_on_a_target_whose_extra_is_missing_names_the_install_command(
    target: str, missing: tuple[str, ...], extra: str
) -> None:
    result = harness_without(missing, "run", str(DEFAULT), "--target", target)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: the {target} target needs the {extra} extra: pip install -e '{ROOT}[{extra}]'"
    ]


@pytest.mark.integration
def test_the_default_payload_without_the_digits_extra_names_it() -> None:
    result = harness_without(("sklearn",), "validate", str(DEFAULT))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: payload.source 'digits' (the default payload) needs the digits extra: pip install -e '{ROOT}[digits]'"
    ]


def test_the_local_target_needs_no_extra_beyond_the_digits_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    for extra, module in extras.EXTRA_MODULES.items():
        if extra != "digits":
            monkeypatch.setitem(sys.modules, module, None)
    preflight(load_scenario(DEFAULT, {}))


def test_a_payload_of_your_own_or_load_from_the_cluster_needs_no_digits_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"images": [[0.0]]}\n')
    monkeypatch.setitem(sys.modules, "sklearn", None)
    preflight(load_scenario(DEFAULT, {"payload.source": "jsonl", "payload.file": str(bodies)}))
    # The in-cluster load generator's image has scikit-learn of its own.
    in_cluster = {
        "target.kind": "kubernetes",
        "target.kubernetes.image": "s:1",
        "target.kubernetes.loadgen": "in-cluster",
    }
    preflight(load_scenario(DEFAULT, in_cluster))


def test_a_kubernetes_run_with_a_given_image_needs_no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    scenario = load_scenario(DEFAULT, {"target.kind": "kubernetes", "target.kubernetes.image": "service:1"})
    preflight(scenario)
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(MissingExtraError, match=re.escape(f"pip install -e '{ROOT}[kubernetes]'")):
        preflight(scenario)


def test_building_an_image_without_the_docker_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.build import docker_client

    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(MissingExtraError, match="building a container image needs the docker extra"):
        docker_client()


def test_every_extra_named_here_is_one_the_package_declares() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.EXTRA_MODULES) <= set(declared)
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"] == extras.DISTRIBUTION


def test_a_run_without_the_plots_extra_says_on_the_terminal_that_its_report_has_no_plots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.commands import missing_plots_note

    assert missing_plots_note() is None
    monkeypatch.setitem(sys.modules, "plotly", None)
    note = missing_plots_note()
    assert note is not None and note.startswith("report.html has no plots") and "[plots]" in note, note
