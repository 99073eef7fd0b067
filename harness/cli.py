"""The `harness` command: argument parsing and exit codes only; the work happens in `harness.commands`.

Every verb ends with one of the codes of `harness.exit_codes.ExitCode` (listed by `harness --help`). An error
is one line `error: ...` per problem on stderr, and its exit code says whose it is: the input's (2), the
infrastructure's (4) or the harness's own (5, for an error not raised on purpose); `--debug` adds the
traceback. The common flags also read HARNESS_* environment variables (a flag given wins).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness.config import parse_yaml
from harness.errors import (
    BuildError,
    ConfigError,
    DeployError,
    HarnessError,
    LoadError,
    MetricsError,
    MissingExtraError,
    ReportError,
    StorageError,
)
from harness.exit_codes import ExitCode
from harness.extras import DISTRIBUTION, installed

Verb = Callable[..., int | None]

# Whose each error is, most specific first: the input's (the user fixes the scenario, an option, the install)
# or the infrastructure's (a build, a deployment, the cluster, the load generator, a metrics source, the disk).
ERROR_EXIT_CODES: tuple[tuple[type[HarnessError], ExitCode], ...] = (
    (StorageError, ExitCode.INFRASTRUCTURE),
    (ConfigError, ExitCode.BAD_INPUT),
    (ReportError, ExitCode.BAD_INPUT),
    (MissingExtraError, ExitCode.BAD_INPUT),
    (BuildError, ExitCode.INFRASTRUCTURE),
    (DeployError, ExitCode.INFRASTRUCTURE),
    (LoadError, ExitCode.INFRASTRUCTURE),
    (MetricsError, ExitCode.INFRASTRUCTURE),
)


def exit_code_of(error: BaseException) -> ExitCode:
    """The exit code an error ends the process with."""
    for kind, code in ERROR_EXIT_CODES:
        if isinstance(error, kind):
            return code
    return ExitCode.INFRASTRUCTURE if isinstance(error, HarnessError) else ExitCode.INTERNAL_ERROR


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(error: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(error)
    if isinstance(error, ConfigError) and len(error.problems) > 1:
        lines = list(error.problems)
    elif isinstance(error, HarnessError):
        lines = [f"{error.message}; {error.hint}" if error.hint else error.message]
    else:
        # Not raised on purpose: name the exception, since its text alone may not say what went wrong.
        lines = [f"unexpected {type(error).__name__}: {error}" + ("" if debug else " (--debug shows the traceback)")]
    for line in lines:
        click.echo(f"error: {_one_line(line)}", err=True)
    sys.exit(exit_code_of(error))


def _verb(function: Verb) -> Callable[..., None]:
    """Add --debug and turn the verb's return value, error or interruption into the process exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, debug: bool, **kwargs: Any) -> None:
        try:
            code = function(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as error:  # every error, expected or not, is one line per problem and its exit code
            _fail(error, debug)
        sys.exit(int(code or ExitCode.OK))

    return click.option("--debug", is_flag=True, envvar="HARNESS_DEBUG", help="Show full tracebacks.")(wrapper)


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE with a dotted key, e.g. target.replicas=3")
        overrides[key] = parse_yaml(raw, f"--set {key}")
    return overrides


_HELP = "\n".join(
    [
        "Scalability load tests for ML model services: will it hold its latency objectives, on how many replicas?",
        "",
        "\b",
        "Exit codes:",
        *(f"  {code.value:<4} {code.meaning}" for code in ExitCode),
        "",
        "The common flags also read environment variables (HARNESS_TARGET, HARNESS_URL, HARNESS_OUT, ...: each "
        "flag's help names its own); a flag given on the command line wins, and both override the scenario file.",
    ]
)


@click.group(help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION)
def cli() -> None:
    pass


def _options(*decorators: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[..., Any]:
    """Several click options as one decorator, so verbs that share them declare them once."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


SCENARIO_ARGUMENT = click.argument(
    "scenario", type=click.Path(path_type=Path), required=False, envvar="HARNESS_SCENARIO"
)
SET_OPTION = click.option(
    "--set", "sets", multiple=True, help="Override any scenario field: --set stages.0.users=8 (repeatable)."
)


@dataclass(frozen=True)
class TargetFlags:
    """Where the service runs and how it is built, as `run` and `sweep` both take it from their flags."""

    target_kind: str | None
    urls: tuple[str, ...]
    allow_remote: bool | None
    tls_ca_bundle: Path | None
    tls_no_verify: bool | None
    base_image: str | None
    ca_bundle: Path | None
    platform: str | None
    registry: str | None
    sets: tuple[str, ...]

    def overrides(self, *, urls_are_bases: bool = True) -> dict[str, Any]:
        """The dotted-key overrides these flags stand for (`--set` ones first, the flags win); `urls_are_bases`
        is False for a run without a scenario file, whose URLs carry the endpoint."""
        overrides = _parse_set(self.sets)
        for key, value in (
            ("target.kind", self.target_kind),
            ("target.urls", list(self.urls) if self.urls and urls_are_bases else None),
            ("target.allow_remote", self.allow_remote),
            # Absolute: a relative path in the scenario resolves against its file, on the command line against here.
            ("target.tls.ca_bundle", None if self.tls_ca_bundle is None else str(self.tls_ca_bundle.resolve())),
            ("target.tls.verify", None if self.tls_no_verify is None else not self.tls_no_verify),
            ("build.base_image", self.base_image),
            ("build.ca_bundle", str(self.ca_bundle.resolve()) if self.ca_bundle else None),
            ("build.platform", self.platform),
            ("target.kubernetes.registry", self.registry),
        ):
            if value is not None:
                overrides[key] = value
        return overrides


@dataclass(frozen=True)
class LoadFlags:
    """What a run without a scenario file does, from its flags (k6's and Locust's)."""

    users: int | None
    rate_rps: float | None
    duration: str | None
    warmup: str | None
    objectives: tuple[str, ...]
    body: str | None


def _gathered(name: str, kind: type[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hand a verb the flags that are `kind`'s fields as one argument `name` (a TargetFlags, a LoadFlags)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            flags = {field.name: kwargs.pop(field.name) for field in dataclasses.fields(kind)}
            return function(*args, **{name: kind(**flags)}, **kwargs)

        return wrapper

    return decorate


# Where the service runs and how it is built: `run` and `sweep` take the same.
TARGET_OPTIONS = _options(
    click.option(
        "--target",
        "target_kind",
        envvar="HARNESS_TARGET",
        help="Override target.kind (local, external, docker, kubernetes). [env: HARNESS_TARGET]",
    ),
    click.option(
        "--url",
        "urls",
        multiple=True,
        envvar="HARNESS_URL",
        help="The service's URL (repeatable; the external target). Without a scenario file its path is the endpoint "
        "loaded. [env: HARNESS_URL, space-separated]",
    ),
    click.option(
        "--allow-remote",
        is_flag=True,
        default=None,
        envvar="HARNESS_ALLOW_REMOTE",
        help="Let the external target send load to URLs that are not loopback (target.allow_remote). "
        "[env: HARNESS_ALLOW_REMOTE=1]",
    ),
    click.option(
        "--tls-ca-bundle",
        type=click.Path(path_type=Path),
        envvar="HARNESS_TLS_CA_BUNDLE",
        help="External target: PEM CA certificates that verify the https URLs (target.tls.ca_bundle). "
        "[env: HARNESS_TLS_CA_BUNDLE]",
    ),
    click.option(
        "--tls-no-verify",
        is_flag=True,
        default=None,
        help="External target: do not verify the https URLs' certificates (target.tls.verify: false); the verdict "
        "says so.",
    ),
    click.option(
        "--base-image",
        envvar="HARNESS_BASE_IMAGE",
        help="Docker/Kubernetes targets: base image for the service image build. [env: HARNESS_BASE_IMAGE]",
    ),
    click.option(
        "--ca-bundle",
        type=click.Path(path_type=Path),
        envvar="HARNESS_CA_BUNDLE",
        help="CA bundle for package installs in the build. [env: HARNESS_CA_BUNDLE]",
    ),
    click.option(
        "--platform",
        envvar="HARNESS_PLATFORM",
        help="Docker/Kubernetes targets: build the images for this platform, e.g. linux/amd64 (build.platform). "
        "[env: HARNESS_PLATFORM]",
    ),
    click.option(
        "--registry",
        envvar="HARNESS_REGISTRY",
        help="Kubernetes target: push the images to this registry (host[:port][/path]) with your Docker credentials "
        "and deploy them by digest (target.kubernetes.registry). [env: HARNESS_REGISTRY]",
    ),
    SET_OPTION,
    _gathered("target", TargetFlags),
)

# What a run without a scenario file does (k6's and Locust's flags): one stage against --url.
LOAD_OPTIONS = _options(
    click.option(
        "--users",
        type=click.IntRange(min=1),
        envvar="HARNESS_USERS",
        help="Without a scenario file: concurrent users (closed model; default 1). [env: HARNESS_USERS]",
    ),
    click.option(
        "--rate",
        "rate_rps",
        type=click.FloatRange(min=0, min_open=True),
        envvar="HARNESS_RATE",
        help="Without a scenario file: arrivals per second (open model), instead of --users. [env: HARNESS_RATE]",
    ),
    click.option(
        "--duration",
        envvar="HARNESS_DURATION",
        help="Without a scenario file: how long to load, e.g. 60s, 2m, 1m30s (default 60s). [env: HARNESS_DURATION]",
    ),
    click.option(
        "--warmup",
        envvar="HARNESS_WARMUP",
        help="Without a scenario file: an unjudged warm-up stage before it, e.g. 10s. [env: HARNESS_WARMUP]",
    ),
    click.option(
        "--objective",
        "objectives",
        multiple=True,
        envvar="HARNESS_OBJECTIVE",
        help="An objective every judged stage must hold, e.g. 'latency_p95_ms<=250' or 'throughput_rps>=20' "
        "(repeatable; added to a scenario file's). [env: HARNESS_OBJECTIVE, space-separated]",
    ),
    click.option(
        "--body", help="Without a scenario file: the JSON body POSTed to --url (default: the digits payload)."
    ),
    _gathered("load", LoadFlags),
)


def _load_scenario_or_flags(
    scenario: Path | None, overrides: dict[str, Any], urls: tuple[str, ...], load: LoadFlags
) -> Any:
    """The scenario of a verb: the file's, or one made from --url and the load flags when no file is given."""
    from harness.config import load_scenario, parse_scenario, scenario_from_data
    from harness.flag_scenario import parse_duration_s, parse_objective, scenario_from_flags

    if scenario is not None:
        shaping = (("--users", load.users), ("--rate", load.rate_rps), ("--duration", load.duration))
        given = [
            flag for flag, value in (*shaping, ("--warmup", load.warmup), ("--body", load.body)) if value is not None
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: these shape a run without a scenario file; with {scenario}, override its "
                "fields instead (e.g. --set stages.0.users=8)"
            )
        loaded = load_scenario(scenario, overrides)
        if not load.objectives:
            return loaded
        # Validated again as a whole: the scenario's checks across sections apply to the added objectives too.
        data = loaded.model_dump(by_alias=True)
        data["objectives"] = [*data["objectives"], *(parse_objective(text) for text in load.objectives)]
        return parse_scenario(data, f"{scenario} with --objective")
    data = scenario_from_flags(
        urls,
        users=load.users,
        rate_rps=load.rate_rps,
        duration_s=parse_duration_s(load.duration or "60s"),
        warmup_s=None if load.warmup is None else parse_duration_s(load.warmup, "--warmup"),
        objectives=load.objectives,
        body=load.body,
    )
    return scenario_from_data(data, "command line", Path.cwd(), overrides)


@cli.command()
@SCENARIO_ARGUMENT
@TARGET_OPTIONS
@LOAD_OPTIONS
@click.option(
    "--replicas", type=int, envvar="HARNESS_REPLICAS", help="Override target.replicas. [env: HARNESS_REPLICAS]"
)
@click.option(
    "--out", type=click.Path(path_type=Path), envvar="HARNESS_OUT", help="Override output.dir. [env: HARNESS_OUT]"
)
@click.option("--run-id", help="Override output.run_id.")
@click.option(
    "--exporter-port",
    type=int,
    envvar="HARNESS_EXPORTER_PORT",
    help="Serve the harness's live metrics on this 127.0.0.1 port. [env: HARNESS_EXPORTER_PORT]",
)
@click.option(
    "--pushgateway",
    envvar="HARNESS_PUSHGATEWAY",
    help="Push the final verdict figures to this Prometheus Pushgateway URL. [env: HARNESS_PUSHGATEWAY]",
)
@click.option(
    "--remote-write",
    envvar="HARNESS_REMOTE_WRITE",
    help="Send the run's series while it runs to this Prometheus remote-write URL (metrics.remote_write_url; the "
    "remote-write extra). [env: HARNESS_REMOTE_WRITE]",
)
@click.option(
    "--json",
    "json_progress",
    is_flag=True,
    envvar="HARNESS_JSON",
    help="Progress as JSON lines (for machines). [env: HARNESS_JSON=1]",
)
@click.option(
    "--fail-on",
    type=click.Choice(["fail", "warn"]),
    default="fail",
    show_default=True,
    envvar="HARNESS_FAIL_ON",
    help="The least verdict that exits 1: warn also fails a run whose objectives only WARNed. [env: HARNESS_FAIL_ON]",
)
@_verb
def run(
    scenario: Path | None,
    target: TargetFlags,
    load: LoadFlags,
    replicas: int | None,
    out: Path | None,
    run_id: str | None,
    exporter_port: int | None,
    pushgateway: str | None,
    remote_write: str | None,
    json_progress: bool,
    fail_on: str,
) -> int:
    """Run SCENARIO (a YAML file), or without one a single stage against --url, and print its verdict.

    \b
    harness run loadtests/default.yaml
    harness run --url http://127.0.0.1:3000/classify --users 8 --duration 60s --objective 'latency_p95_ms<=250'
    """
    from harness.commands import run_scenario

    overrides = target.overrides(urls_are_bases=scenario is not None)
    for key, value in (
        ("target.replicas", replicas),
        ("output.dir", str(out) if out else None),
        ("output.run_id", run_id),
        ("metrics.exporter_port", exporter_port),
        ("metrics.pushgateway_url", pushgateway),
        ("metrics.remote_write_url", remote_write),
    ):
        if value is not None:
            overrides[key] = value
    loaded = _load_scenario_or_flags(scenario, overrides, target.urls, load)
    return run_scenario(loaded, json_progress=json_progress, fail_on_warn=fail_on == "warn")


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path), envvar="HARNESS_SCENARIO")
@SET_OPTION
@_verb
def validate(scenario: Path, sets: tuple[str, ...]) -> None:
    """Check SCENARIO without running it: the schema (every problem at once, with the closest key for a misspelt
    one), then the preflight `run` does first (files, service path, header variables), and warnings for stages
    too short for their percentile objectives."""
    from harness.config import load_scenario
    from harness.preflight import preflight, short_stage_warnings

    loaded = load_scenario(scenario, _parse_set(sets))
    preflight(loaded)
    for warning in short_stage_warnings(loaded):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{scenario}: valid ({len(loaded.stages)} stages, {loaded.duration_s:.0f} s of load)")


@cli.command()
@click.option("--docker/--no-docker", default=True, help="Also remove containers of harnesses that are gone.")
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path),
    help="Also delete cluster objects: those of harnesses of this machine that are gone, and every harness "
    "object (and namespace) whose expiry has passed, whoever made it.",
)
@click.option(
    "--namespace",
    help="With --kubeconfig: look in this namespace only (for a user whose rights are in one namespace).",
)
@_verb
def cleanup(docker: bool, kubeconfig: Path | None, namespace: str | None) -> None:
    """Remove what killed runs left: processes, cgroups, containers, cluster objects.

    Only what bears the mark of a harness of this machine that no longer runs is touched, and in a
    cluster also what any harness created that has expired (its planned end plus a margin); every
    `harness run` does the same for processes and cgroups before it starts.
    """
    from harness.cleanup import clean_up_dead_runs

    if namespace is not None and kubeconfig is None:
        raise ConfigError("--namespace applies to the cluster's clean-up: give --kubeconfig too")
    lines = clean_up_dead_runs(
        docker=docker and installed("docker") and _docker_reachable(),
        kubeconfig=kubeconfig,
        namespace=namespace,
        on_line=click.echo,
    )
    if not lines:
        click.echo("nothing to clean up")


def _docker_reachable() -> bool:
    import os

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return not host.startswith("unix://") or Path(host.removeprefix("unix://")).exists()


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--namespace", help="The namespace the Role grants rights in (default: target.kubernetes.namespace).")
@click.option("--name", default="harness-run", show_default=True, help="The Role's (and RoleBinding's) name.")
@click.option("--service-account", help="Also print a RoleBinding of the Role to this ServiceAccount of the namespace.")
@click.option(
    "--set", "sets", multiple=True, help="Override any scenario field: --set target.kubernetes.loadgen=in-cluster"
)
@_verb
def rbac(scenario: Path, namespace: str | None, name: str, service_account: str | None, sets: tuple[str, ...]) -> None:
    """Print the narrowest Role a Kubernetes run of SCENARIO needs: rights in one existing namespace, chosen by the
    scenario's routes and features (`kubectl apply -f -` it, then bind it)."""
    from harness.commands import rbac_manifests

    click.echo(
        rbac_manifests(scenario, _parse_set(sets), namespace=namespace, name=name, service_account=service_account),
        nl=False,
    )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_verb
def report(run_dir: Path) -> None:
    """Re-analyse RUN_DIR's raw data and re-render every report in it."""
    from harness.commands import rerender

    for path in rerender(run_dir):
        click.echo(str(path))


@cli.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--alpha", default=0.01, show_default=True, help="Significance level, between 0 and 1.")
@click.option("--min-effect", default=0.05, show_default=True, help="Smallest relative change that counts (>= 0).")
@click.option("--html", "html_out", type=click.Path(path_type=Path), help="Write a side-by-side HTML report.")
@_verb
def compare(baseline: Path, candidate: Path, alpha: float, min_effect: float, html_out: Path | None) -> int:
    """Compare two run directories; exit 1 on a statistically significant regression."""
    from harness.commands import compare_runs

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha:g}: must be between 0 and 1 (exclusive), e.g. 0.01")
    if not (math.isfinite(min_effect) and min_effect >= 0):
        raise ConfigError(f"--min-effect {min_effect:g}: must be a finite number >= 0, e.g. 0.05")
    return compare_runs(baseline, candidate, alpha=alpha, min_effect=min_effect, html_out=html_out)


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path), envvar="HARNESS_SCENARIO")
@TARGET_OPTIONS
@click.option(
    "--out", type=click.Path(path_type=Path), envvar="HARNESS_OUT", help="Override output.dir. [env: HARNESS_OUT]"
)
@click.option(
    "--json",
    "json_lines",
    is_flag=True,
    envvar="HARNESS_JSON",
    help="Each probe and the result as JSON lines (for machines). [env: HARNESS_JSON=1]",
)
@click.option("--initial-rps", type=float, default=10.0, show_default=True)
@click.option("--max-rps", type=float, default=2000.0, show_default=True)
@click.option("--tolerance", type=float, default=0.05, show_default=True, help="Stop when the bracket is this tight.")
@click.option("--probe-s", type=float, help="Minimum probe duration (default: long enough for the percentiles).")
@click.option(
    "--warmup-s",
    type=float,
    help="Each probe's unjudged warm-up at its rate, seconds; 0 for none (default: 5).",
)
@click.option(
    "--replicas",
    "replica_counts",
    type=int,
    multiple=True,
    envvar="HARNESS_REPLICAS",
    help="Search at each replica count (repeatable); with 1 and more, reports the scaling efficiency. "
    "[env: HARNESS_REPLICAS, space-separated]",
)
@_verb
def sweep(
    scenario: Path,
    target: TargetFlags,
    out: Path | None,
    json_lines: bool,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    probe_s: float | None,
    warmup_s: float | None,
    replica_counts: tuple[int, ...],
) -> int:
    """Search the maximum sustainable arrival rate of SCENARIO's service under its objectives."""
    from harness.commands import sweep_scenario

    overrides = target.overrides()
    if out is not None:
        overrides["output.dir"] = str(out)
    return sweep_scenario(
        scenario,
        overrides,
        initial_rps=initial_rps,
        max_rps=max_rps,
        tolerance=tolerance,
        probe_s=probe_s,
        warmup_s=warmup_s,
        replica_counts=replica_counts,
        json_lines=json_lines,
    )


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option(
    "--base-image",
    envvar="HARNESS_BASE_IMAGE",
    help="Base image for the container build (default: BentoML's). [env: HARNESS_BASE_IMAGE]",
)
@click.option(
    "--ca-bundle",
    type=click.Path(path_type=Path),
    envvar="HARNESS_CA_BUNDLE",
    help="CA bundle for package installs in the build. [env: HARNESS_CA_BUNDLE]",
)
@click.option("--tag", help="Image tag (default: from the bento tag).")
@click.option(
    "--platform",
    envvar="HARNESS_PLATFORM",
    help="Build for this platform, e.g. linux/amd64 (default: build.platform, else Docker's). [env: HARNESS_PLATFORM]",
)
@_verb
def build(
    scenario: Path, base_image: str | None, ca_bundle: Path | None, tag: str | None, platform: str | None
) -> None:
    """Build SCENARIO's service as a bento and an OCI image; prints its tag first."""
    from harness.commands import build_image

    click.echo(build_image(scenario, base_image=base_image, ca_bundle=ca_bundle, tag=tag, platform=platform))


@cli.command()
@_verb
def dashboard() -> None:
    """Print the Grafana dashboard of the series `run --remote-write` sends (import it in Grafana)."""
    from harness.resources import data_path

    click.echo(data_path("grafana", "harness-dashboard.json").read_text(encoding="utf-8"), nl=False)


@cli.command()
@_verb
def schema() -> None:
    """Print the scenario files' JSON Schema, for editors (yaml-language-server: docs/scenario.md says how)."""
    from harness.resources import data_path

    click.echo(data_path("scenario.schema.json").read_text(encoding="utf-8"), nl=False)


def main() -> None:
    """Console entry point."""
    cli()


if __name__ == "__main__":
    main()
