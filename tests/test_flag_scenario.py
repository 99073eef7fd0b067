"""harness/flag_scenario.py: the scenario a run without a file makes from --url and the load flags, and the CLI
that reads those flags and their HARNESS_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.config import Scenario, parse_scenario
from harness.errors import ConfigError
from harness.exit_codes import ExitCode
from harness.flag_scenario import parse_duration_s, parse_objective, scenario_from_flags, split_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("2m", 120), ("1m30s", 90), ("1h", 3600), ("500ms", 0.5), ("90", 90), ("2.5s", 2.5)],
)
def test_durations_read_as_k6_writes_them(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "1m 30s", "-5s", "0s", "s"])
def test_a_bad_duration_names_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--duration '.*'"):
        parse_duration_s(text)


def test_objectives_take_a_bound_either_way() -> None:
    assert parse_objective("latency_p95_ms<=250") == {"metric": "latency_p95_ms", "max": 250.0}
    assert parse_objective(" throughput_rps >= 20 ") == {"metric": "throughput_rps", "min": 20.0}
    for text in ("latency_p95_ms<250", "latency_p95_ms", "<=3", "error_rate<=x"):
        with pytest.raises(ConfigError, match="--objective"):
            parse_objective(text)


def test_a_url_splits_into_the_base_and_the_endpoint() -> None:
    assert split_url("http://127.0.0.1:3000/classify") == ("http://127.0.0.1:3000", "/classify")
    assert split_url("https://127.0.0.1:8443") == ("https://127.0.0.1:8443", "/")
    with pytest.raises(ConfigError, match="expected an http"):
        split_url("127.0.0.1:3000/classify")


def parsed(**flags: Any) -> Scenario:
    defaults: dict[str, Any] = {"users": None, "rate_rps": None, "duration_s": 60.0}
    return parse_scenario(scenario_from_flags(["http://127.0.0.1:3000/classify"], **{**defaults, **flags}), "flags")


def test_flags_make_a_one_stage_scenario_on_the_external_target() -> None:
    scenario = parsed(users=8, objectives=["latency_p95_ms<=250"])
    assert scenario.name == "127.0.0.1-3000"
    assert scenario.target.kind == "external" and scenario.target.urls == ["http://127.0.0.1:3000"]
    assert scenario.service.endpoint == "/classify" and scenario.requests is None
    assert [(s.name, s.users, s.duration_s, s.judged) for s in scenario.stages] == [("load", 8, 60.0, True)]
    assert [o.name for o in scenario.objectives] == ["latency_p95_ms <= 250"]


def test_a_rate_a_warmup_and_a_body() -> None:
    scenario = parsed(rate_rps=25.0, warmup_s=10.0, body='{"rows": [[5.1, 3.5, 1.4, 0.2]]}')
    assert [(s.name, s.arrival_rate_rps, s.judged) for s in scenario.stages] == [
        ("warmup", 25.0, False),
        ("load", 25.0, True),
    ]
    assert scenario.requests is not None
    (request,) = scenario.requests
    assert (request.method, request.path, request.body_template) == (
        "POST",
        "/classify",
        {"rows": [[5.1, 3.5, 1.4, 0.2]]},
    )
    assert parsed().stages[0].users == 1


def test_contradicting_or_missing_flags_are_named() -> None:
    with pytest.raises(ConfigError, match=r"--users .* and --rate .* exclude each other"):
        parsed(users=2, rate_rps=3.0)
    with pytest.raises(ConfigError, match="needs --url"):
        scenario_from_flags([], users=1, rate_rps=None, duration_s=1.0)
    with pytest.raises(ConfigError, match="same path"):
        scenario_from_flags(["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"], users=1, rate_rps=None, duration_s=1.0)
    with pytest.raises(ConfigError, match="--body: not valid JSON"):
        parsed(body="{rows")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `harness run` hands to the run: the scenario and --fail-on, without running anything."""
    import harness.commands

    seen: dict[str, Any] = {}

    def run_scenario(scenario: Scenario, *, json_progress: bool = False, fail_on_warn: bool = False) -> int:
        seen.update(scenario=scenario, json_progress=json_progress, fail_on_warn=fail_on_warn)
        return 0

    monkeypatch.setattr(harness.commands, "run_scenario", run_scenario)
    return seen


def test_run_without_a_scenario_file_reads_the_flags(captured: dict[str, Any]) -> None:
    args = ["run", "--url", "http://127.0.0.1:3000/classify", "--users", "8", "--duration", "1m"]
    result = CliRunner().invoke(cli, [*args, "--objective", "latency_p95_ms<=250", "--fail-on", "warn"])
    assert result.exit_code == 0, result.output
    scenario = captured["scenario"]
    assert scenario.stages[0].users == 8 and scenario.stages[0].duration_s == 60
    assert scenario.service.endpoint == "/classify" and [o.max for o in scenario.objectives] == [250]
    assert captured["fail_on_warn"] is True and captured["json_progress"] is False


def test_the_common_flags_read_harness_environment_variables(captured: dict[str, Any], tmp_path: Path) -> None:
    env = {
        "HARNESS_URL": "http://127.0.0.1:3001/predict http://127.0.0.1:3002/predict",
        "HARNESS_RATE": "12.5",
        "HARNESS_DURATION": "30s",
        "HARNESS_OBJECTIVE": "latency_p95_ms<=100 error_rate<=0.01",
        "HARNESS_OUT": str(tmp_path / "out"),
        "HARNESS_FAIL_ON": "warn",
        "HARNESS_JSON": "1",
    }
    result = CliRunner().invoke(cli, ["run"], env=env)
    assert result.exit_code == 0, result.output
    scenario = captured["scenario"]
    assert scenario.target.urls == ["http://127.0.0.1:3001", "http://127.0.0.1:3002"]
    assert scenario.stages[0].arrival_rate_rps == 12.5 and scenario.stages[0].duration_s == 30
    assert [o.metric for o in scenario.objectives] == ["latency_p95_ms", "error_rate"]
    assert scenario.output.dir == tmp_path / "out"
    assert captured["fail_on_warn"] is True and captured["json_progress"] is True
    # A flag given on the command line wins over its variable.
    result = CliRunner().invoke(cli, ["run", "--rate", "3", "--fail-on", "fail"], env=env)
    assert result.exit_code == 0, result.output
    assert captured["scenario"].stages[0].arrival_rate_rps == 3 and captured["fail_on_warn"] is False


def test_a_scenario_file_and_the_load_flags(captured: dict[str, Any]) -> None:
    default = str(ROOT / "loadtests" / "default.yaml")
    result = CliRunner().invoke(cli, ["run", default, "--objective", "throughput_rps>=30"])
    assert result.exit_code == 0, result.output
    assert [o.name for o in captured["scenario"].objectives][-1] == "throughput_rps >= 30"
    assert len(captured["scenario"].objectives) == 5
    refused = CliRunner().invoke(cli, ["run", default, "--users", "3"])
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert refused.stderr.startswith("error: --users: these shape a run without a scenario file;")
    alone = CliRunner().invoke(cli, ["run"])
    assert alone.exit_code == ExitCode.BAD_INPUT and "needs --url" in alone.stderr


def test_sweep_takes_the_target_and_output_options_of_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import harness.commands

    seen: dict[str, Any] = {}

    def sweep_scenario(path: Path, overrides: dict[str, Any], **options: Any) -> int:
        seen.update(overrides=overrides, **options)
        return 0

    monkeypatch.setattr(harness.commands, "sweep_scenario", sweep_scenario)
    args = ["sweep", str(ROOT / "loadtests" / "default.yaml"), "--target", "external", "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert seen["overrides"] == {
        "target.kind": "external",
        "target.urls": ["http://127.0.0.1:9"],
        "output.dir": str(tmp_path),
    }
    assert seen["json_lines"] is True
