"""The CLI verbs that work on saved run directories: report, compare, validate (real subprocesses), and exit codes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.analysis.latency import LatencyHistogram
from harness.cli import cli
from harness.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "fixtures" / "run_recorded"
HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def copy_run(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(RECORDED, target)
    return target


def slow_down(run_dir: Path, factor: float) -> None:
    """Rewrite every interval's latency histogram with every latency multiplied by `factor`."""
    path = run_dir / "client_intervals.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        original = LatencyHistogram.decode(record["latency_hdr"])
        slower = LatencyHistogram()
        for value_s, count in original.iter_buckets():
            slower.record_s(value_s * factor, count)
        record["latency_hdr"] = slower.encode()
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.integration
def test_report_recomputes_the_verdict_and_renders_everything(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path, "run")
    saved = json.loads((run_dir / "verdict.json").read_text())
    (run_dir / "verdict.json").unlink()
    result = harness("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    for name in ("verdict.json", "report.html", "report.md", "junit.xml"):
        assert (run_dir / name).exists()
        assert str(run_dir / name) in result.stdout
    assert json.loads((run_dir / "verdict.json").read_text()) == saved, "the verdict is a function of the raw data"


@pytest.mark.integration
def test_report_on_a_missing_directory_exits_2(tmp_path: Path) -> None:
    result = harness("report", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not a run directory" in result.stderr


@pytest.mark.integration
def test_compare_finds_no_regression_against_itself_and_one_against_a_slower_copy(tmp_path: Path) -> None:
    baseline = copy_run(tmp_path, "baseline")
    same = copy_run(tmp_path, "same")
    slower = copy_run(tmp_path, "slower")
    slow_down(slower, 1.5)

    unchanged = harness("compare", str(baseline), str(same))
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    html = tmp_path / "compare.html"
    regressed = harness("compare", str(baseline), str(slower), "--html", str(html))
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert "latency_p95" in regressed.stdout
    assert html.exists() and "<html" in html.read_text().lower()


@pytest.mark.integration
def test_validate_accepts_every_checked_in_scenario() -> None:
    for scenario in sorted((ROOT / "loadtests").glob("*.yaml")):
        result = harness("validate", str(scenario))
        assert result.returncode == 0, result.stderr
        assert "valid" in result.stdout


@pytest.mark.integration
def test_a_bad_override_names_the_key(tmp_path: Path) -> None:
    result = harness("validate", str(ROOT / "loadtests" / "default.yaml"), "--set", "target.replicas=-1")
    assert result.returncode == 2
    assert "target.replicas" in result.stderr and "Traceback" not in result.stderr
    result = harness("validate", str(ROOT / "loadtests" / "default.yaml"), "--set", "novalue")
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: ExitCode, *expected: str) -> None:
    """Exit code `code` and exactly one stderr line `error: ...` naming each of `expected`, no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0]


def test_help_lists_every_exit_code() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for code in ExitCode:
        assert f"  {code.value:<4} {code.meaning}" in result.output


def test_an_unexpected_error_is_one_line_and_an_internal_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import harness.commands

    def broken(run_dir: Path) -> list[Path]:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(harness.commands, "rerender", broken)
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == ExitCode.INTERNAL_ERROR == 5
    assert result.stderr.splitlines() == [
        "error: unexpected RuntimeError: disk on fire second line (--debug shows the traceback)"
    ]
    debug = CliRunner().invoke(cli, ["report", str(tmp_path), "--debug"])
    assert debug.exit_code == ExitCode.INTERNAL_ERROR
    assert "Traceback" in debug.stderr and debug.stderr.splitlines()[-1].startswith("error: unexpected RuntimeError")


def test_an_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import harness.commands

    def interrupted(run_dir: Path) -> list[Path]:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.commands, "rerender", interrupted)
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == ExitCode.INTERRUPTED == 130
    assert result.stderr == "interrupted\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[", "not valid YAML (line 1, column 2: "),
        ("!!int x", "not valid YAML (a value cannot be converted to its tag: ValueError "),
        ("[" * 3000, "line 1, column 51: nested deeper than 50 levels"),
        ("*a", "alias *a: YAML aliases are not allowed"),
    ],
)
def test_an_unparsable_override_value_names_it(value: str, expected: str) -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "loadtests" / "default.yaml"), "--set", f"name={value}"])
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --set name: ") and expected in lines[0], result.stderr


@pytest.mark.parametrize(
    ("option", "value"), [("--alpha", "5"), ("--alpha", "0"), ("--alpha", "nan"), ("--min-effect", "-1")]
)
def test_compare_rejects_out_of_range_options(tmp_path: Path, option: str, value: str) -> None:
    result = CliRunner().invoke(cli, ["compare", str(tmp_path), str(tmp_path), option, value])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"error: {option} ")


def test_compare_into_a_missing_folder_names_it(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path, "run")
    missing = tmp_path / "nope" / "compare.html"
    result = CliRunner().invoke(cli, ["compare", str(run_dir), str(run_dir), "--html", str(missing)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.splitlines() == [f"error: {missing}: cannot write (No such file or directory)"]


def test_a_reused_run_id_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import harness.run

    def must_not_run(self: harness.run.Run) -> None:
        raise AssertionError("the run went ahead")

    monkeypatch.setattr(harness.run.Run, "_build_deploy_and_drive", must_not_run)
    (tmp_path / "taken").mkdir()
    scenario = str(ROOT / "loadtests" / "default.yaml")
    result = CliRunner().invoke(cli, ["run", scenario, "--out", str(tmp_path), "--run-id", "taken"])
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: output.run_id: run directory ")
    assert "already exists" in lines[0] and "--run-id" in lines[0]
    assert list((tmp_path / "taken").iterdir()) == []


@pytest.mark.integration
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_report_on_a_full_disk_is_an_infrastructure_failure_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path, "run")
    # Writing report.html.tmp goes to /dev/full, which fails as a full disk does.
    (run_dir / "report.html.tmp").symlink_to("/dev/full")
    result = harness("report", str(run_dir))
    assert_one_line_error(result, ExitCode.INFRASTRUCTURE, str(run_dir / "report.html"), "No space left on device")
    assert not list(run_dir.glob("*.tmp"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9)"),
        (b"[" * 10_000, "line 1, column 51: nested deeper than 50 levels"),
        (b"name: a\nname: b\n", "line 2, column 1: duplicate key 'name' (first on line 1)"),
        (b"a: &a [1, 2]\nb: [*a, *a]\n", "line 2, column 5: alias *a: YAML aliases are not allowed"),
        (b"name: ../../etc\n", "field 'name' = '../../etc'"),
    ],
)
def test_validate_refuses_a_bad_file_one_line_per_problem(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {path}: {expected}"), result.stderr
    assert all(line.startswith(f"error: {path}: ") for line in lines), result.stderr


def test_validate_names_every_problem_at_once_with_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "typos.yaml"
    path.write_text(
        "name: typos\ntarget: {replicsa: 2}\nstages:\n  - {name: a, duraton_s: 5, users: many}\n"
        "objectives: [{metric: latency_p95_ms, max: 250}]\nautoscaling: {minReplica: 1, metrics: []}\nlaod: {}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert sorted(result.stderr.splitlines()) == sorted(
        f"error: {path}: {problem}"
        for problem in (
            "unknown key 'target.replicsa': did you mean 'replicas'?",
            "field 'stages[0].duration_s' is required",
            "field 'stages[0].users' = 'many': Input should be a valid integer, unable to parse string as an integer",
            "unknown key 'stages[0].duraton_s': did you mean 'duration_s'?",
            "field 'autoscaling.metrics': List should have at least 1 item after validation, not 0",
            "unknown key 'autoscaling.minReplica': did you mean 'minReplicas'?",
            "unknown key 'laod': did you mean 'load'?",
        )
    )
    far = tmp_path / "far.yaml"
    far.write_text("name: far\nstages: [{name: a, duration_s: 5, users: 1}]\ncapacity: {zzz: 1}\n")
    result = CliRunner().invoke(cli, ["validate", str(far)])
    assert result.stderr == (
        f"error: {far}: unknown key 'capacity.zzz': expected one of: target_peak_rps, headroom, price_per_core_hour\n"
    )


def test_set_indexes_a_list() -> None:
    scenario = str(ROOT / "loadtests" / "default.yaml")
    result = CliRunner().invoke(
        cli, ["validate", scenario, "--set", "stages.0.users=8", "--set", "stages.1.duration_s=5"]
    )
    assert result.exit_code == 0, result.stderr
    assert "(5 stages, 95 s of load)" in result.stdout
    result = CliRunner().invoke(cli, ["validate", scenario, "--set", "stages.9.users=8"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert (
        result.stderr
        == "error: override 'stages.9.users': 'stages' is a list of 5; '9' is not one of its indexes (0 to 4)\n"
    )


def rename_stages(run_dir: Path, prefix: str) -> None:
    """Give every stage of a run directory another name, in its stage windows and its records."""
    stages = json.loads((run_dir / "stages.json").read_text())
    for stage in stages:
        stage["name"] = prefix + stage["name"]
    (run_dir / "stages.json").write_text(json.dumps(stages))
    path = run_dir / "client_intervals.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        record["stage"] = prefix + record["stage"]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_compare_of_runs_without_a_common_stage_exits_2(tmp_path: Path) -> None:
    baseline = copy_run(tmp_path, "baseline")
    other = copy_run(tmp_path, "other")
    rename_stages(other, "x-")
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(other)])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.stderr.splitlines() == [
        f"error: {baseline} and {other} share no judged stage, so nothing can be compared "
        "(baseline: low, base, step, peak; candidate: x-low, x-base, x-step, x-peak); "
        "compare runs of the same scenario"
    ]
    assert result.stdout == ""


def test_validate_runs_the_preflight_of_run(tmp_path: Path) -> None:
    default = str(ROOT / "loadtests" / "default.yaml")
    missing_payload = CliRunner().invoke(
        cli, ["validate", default, "--set", "payload.source=jsonl", "--set", f"payload.file={tmp_path / 'none.jsonl'}"]
    )
    assert missing_payload.exit_code == 2 and "payload.file" in missing_payload.output
    missing_service = CliRunner().invoke(cli, ["validate", default, "--set", f"service.path={tmp_path / 'gone'}"])
    assert missing_service.exit_code == 2 and "service.path" in missing_service.output
    short = CliRunner().invoke(cli, ["validate", default, "--set", "stages.4.duration_s=5"])
    assert short.exit_code == 0, short.output
    assert "warning: stage 'open-60rps' sends about 300 requests" in short.output
    assert "latency_p99_ms, which needs at least 1000" in short.output


@pytest.mark.integration
def test_validate_loads_the_users_locustfile_as_the_load_generator_will_and_names_its_mistake(tmp_path: Path) -> None:
    scenario = tmp_path / "own-users.yaml"
    scenario.write_text(
        "name: own-users\ntarget: {kind: external, urls: ['http://127.0.0.1:9']}\n"
        "stages: [{name: a, duration_s: 5, users: 1}]\nload: {locustfile: users.py}\n"
    )
    users = tmp_path / "users.py"
    for source, expected in [
        ("from locust import HttpUser\nclass Mine(HttpUser):\n    pass\n", None),
        ("from locust import task\nclass Helper:\n    pass\n", "defines no User class"),
        ("class Broken(:\n", "importing it failed: SyntaxError: invalid syntax (users.py, line 1)"),
        ("import not_installed_anywhere\n", "importing it failed: ModuleNotFoundError: No module named"),
    ]:
        users.write_text(source)
        result = CliRunner().invoke(cli, ["validate", str(scenario)])
        if expected is None:
            assert result.exit_code == 0, result.output
            continue
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"error: load.locustfile '{users}': {expected}"), line


def test_a_remote_external_url_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    scenario = tmp_path / "external.yaml"
    scenario.write_text(
        "name: staging\nservice: {path: ., service: 'service:S'}\n"
        "target: {kind: external, urls: ['https://staging.example.com:8443']}\n"
        "stages: [{name: a, duration_s: 5, users: 1}]\n"
    )
    refused = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert refused.exit_code == 2
    assert "is not loopback" in refused.output and "target.allow_remote" in refused.output
    allowed = CliRunner().invoke(cli, ["validate", str(scenario), "--set", "target.allow_remote=true"])
    assert allowed.exit_code == 0, allowed.output
    # `harness run --allow-remote` sets the same field: with it the run gets past the URL to its preflight, which
    # stops it at a missing payload file before any connection (tests send load to 127.0.0.1 only).
    missing = ["--set", "payload.source=jsonl", "--set", f"payload.file={tmp_path / 'none.jsonl'}"]
    missing += ["--out", str(tmp_path / "reports")]
    run_refused = CliRunner().invoke(cli, ["run", str(scenario), *missing])
    assert run_refused.exit_code == 2 and "is not loopback" in run_refused.output
    run_allowed = CliRunner().invoke(cli, ["run", str(scenario), "--allow-remote", *missing])
    assert run_allowed.exit_code == 2 and "payload.file" in run_allowed.output, run_allowed.output
    assert "is not loopback" not in run_allowed.output
    assert not (tmp_path / "reports").exists()


def test_fail_on_warn_turns_only_a_warn_verdict_into_a_failure() -> None:
    from harness.commands import exit_code_for
    from harness.model import Status
    from harness.rundir import RunDirectory

    verdict = RunDirectory(RECORDED).read_verdict()
    for status, code, with_warn in [
        (Status.WARN, ExitCode.OK, ExitCode.FAIL),
        (Status.PASS, ExitCode.OK, ExitCode.OK),
        (Status.FAIL, ExitCode.FAIL, ExitCode.FAIL),
        (Status.INCONCLUSIVE, ExitCode.INCONCLUSIVE, ExitCode.INCONCLUSIVE),
    ]:
        judged = dataclasses.replace(verdict, status=status)
        assert exit_code_for(judged, code, fail_on_warn=False) == code
        assert exit_code_for(judged, code, fail_on_warn=True) == with_warn
    assert exit_code_for(None, ExitCode.INTERRUPTED, fail_on_warn=True) == ExitCode.INTERRUPTED


def test_every_error_kind_has_the_exit_code_of_whose_it_is() -> None:
    from harness import errors
    from harness.cli import exit_code_of

    assert exit_code_of(errors.ConfigError("x")) == exit_code_of(errors.MissingExtraError("x")) == ExitCode.BAD_INPUT
    assert exit_code_of(errors.ReportError("x")) == ExitCode.BAD_INPUT
    for kind in (errors.BuildError, errors.DeployError, errors.LoadError, errors.MetricsError, errors.StorageError):
        assert exit_code_of(kind("x")) == ExitCode.INFRASTRUCTURE, kind
    assert exit_code_of(ValueError("a bug")) == ExitCode.INTERNAL_ERROR
    assert len({code.value for code in ExitCode}) == len(ExitCode)


def test_registry_and_platform_reach_the_scenario_from_flags_and_variables(tmp_path: Path) -> None:
    """--registry and --platform (HARNESS_REGISTRY, HARNESS_PLATFORM) set target.kubernetes.registry and
    build.platform: a value of the wrong form is named by its field before anything runs."""
    scenario = str(ROOT / "loadtests" / "cluster.yaml")
    out = ["--out", str(tmp_path / "reports")]
    flag = CliRunner().invoke(cli, ["run", scenario, "--registry", "https://registry.example.com", *out])
    assert flag.exit_code == 2 and "target.kubernetes.registry" in flag.output, flag.output
    variable = CliRunner().invoke(cli, ["run", scenario, *out], env={"HARNESS_PLATFORM": "amd64"})
    assert variable.exit_code == 2 and "build.platform" in variable.output, variable.output
    assert not (tmp_path / "reports").exists()
